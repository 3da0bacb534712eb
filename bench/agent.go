package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/store"
)

// The two meshes of the sync benchmark: the owner (mesh-b) exports N
// services to the consumer (mesh-a), which dials it.

// agentIdentity is the PEM material of one agent: its SVID and the bundles
// of both meshes.
type agentIdentity struct {
	Chain   []byte            `json:"chain"`
	Key     []byte            `json:"key"`
	Bundles map[string][]byte `json:"bundles"` // by trust domain
}

func (id agentIdentity) tls() (peer.SPIFFETLS, error) {
	svid, err := x509svid.Parse(id.Chain, id.Key)
	if err != nil {
		return peer.SPIFFETLS{}, err
	}
	set := x509bundle.NewSet()
	for td, pem := range id.Bundles {
		b, err := x509bundle.Parse(spiffeid.RequireTrustDomainFromString(td), pem)
		if err != nil {
			return peer.SPIFFETLS{}, err
		}
		set.Add(b)
	}
	return peer.SPIFFETLS{SVID: svid, Bundles: set}, nil
}

// agentIdentities issues the agents of both meshes, each trusting both.
func (p *pki) agentIdentities() (map[string]agentIdentity, error) {
	out := map[string]agentIdentity{}
	for td, ca := range p.cas {
		chain, key, err := ca.Issue(spiffeid.RequireFromPath(ca.TrustDomain(), "/meshfed/agent"), 24*time.Hour)
		if err != nil {
			return nil, err
		}
		id := agentIdentity{Chain: chain, Key: key, Bundles: map[string][]byte{}}
		for otherTD, other := range p.cas {
			id.Bundles[otherTD] = other.CertPEM()
		}
		out[td] = id
	}
	return out, nil
}

// agentConfig is one agent's federation side.
type agentConfig struct {
	// Owner: exports Exports services to the consumer and accepts its
	// stream on Listen. Otherwise it is the consumer and dials Dial.
	Owner    bool          `json:"owner"`
	Exports  int           `json:"exports"`
	Listen   string        `json:"listen"`
	Dial     string        `json:"dial"`
	Window   int           `json:"window"`
	StoreDir string        `json:"storeDir"`
	Identity agentIdentity `json:"identity"`
	// ServicesPerResponse is what the agent offers (at most
	// config.DefaultMaxBatch, its transactions' bound); Plain advertises
	// no extension at all.
	ServicesPerResponse int  `json:"servicesPerResponse"`
	Plain               bool `json:"plain"`
}

// agent is a running agent's federation side, with a store on disk.
type agent struct {
	store   *store.Store
	catalog *catalog.Catalog
	manager *peer.Manager
	srv     *grpc.Server
	addr    string
	cancel  context.CancelFunc
	done    chan struct{}
}

// benchExports are n exported services of mesh-b, for consumer.
func benchExports(n int, consumer string) []model.Export {
	exps := make([]model.Export, n)
	for i := range exps {
		exps[i] = benchExport(i, peerTD, consumer, model.LocalEndpoint{Address: "10.1.0.1", Port: 8080})
	}
	return exps
}

// benchExport is the i-th exported service of the mesh of trust domain td:
// one HTTP port, whose mutual TLS the ingress gateway terminates for
// consumer, proxied to ep.
func benchExport(i int, td, consumer string, ep model.LocalEndpoint) model.Export {
	name := fmt.Sprintf("svc-%06d", i)
	return model.Export{
		Name: name, FQDN: name + "." + td, Mode: model.Terminate, Consumers: []string{consumer},
		Ports: []model.ExportPort{{Name: "http", Port: 8080, Protocol: model.HTTP, SNI: model.DefaultSNI(8080, name+"."+td), Endpoints: []model.LocalEndpoint{ep}}},
	}
}

func startAgent(cfg agentConfig) (a *agent, err error) {
	tlsCfg, err := cfg.Identity.tls()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(cfg.StoreDir, "meshfed.db"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	cat := catalog.New(st, zap.NewNop())
	other, otherTD := peerName, peerTD
	if cfg.Owner {
		other, otherTD = "mesh-a", localTD
	}
	spec := peer.Spec{Peer: catalog.Peer{
		Peer:   model.Peer{Name: other, TrustDomain: otherTD},
		Policy: validate.Policy{TrustDomain: spiffeid.RequireTrustDomainFromString(otherTD)},
	}, Dial: cfg.Dial}
	m, err := peer.NewManager(peer.Config{
		Catalog:    cat,
		TLS:        tlsCfg,
		Window:     max(cfg.Window, config.DefaultWindow),
		Grace:      config.DefaultGrace,
		MaxBatch:   config.DefaultMaxBatch,
		BatchDelay: config.DefaultBatchDelay,
		Ingress: func() wire.Ingress {
			return wire.Ingress{
				Endpoints: []model.Endpoint{{Address: "192.0.2.10", Port: 15443}},
				SANs:      []string{"spiffe://" + peerTD + "/meshfed/gateway/ingress"},
			}
		},
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Log:        zap.NewNop(),

		ServicesPerResponse: cfg.ServicesPerResponse,
		DisableExtensions:   cfg.Plain,
	}, []peer.Spec{spec})
	if err != nil {
		return nil, err
	}
	if cfg.Owner {
		cat.SetExports(benchExports(cfg.Exports, other))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a = &agent{store: st, catalog: cat, manager: m, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	if cfg.Listen != "" {
		lis, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			cancel()
			return nil, err
		}
		a.addr = lis.Addr().String()
		a.srv = m.NewServer()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.srv.Serve(lis)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.Run(ctx)
	}()
	go func() {
		<-ctx.Done()
		if a.srv != nil {
			a.srv.Stop()
		}
		wg.Wait()
		close(a.done)
	}()
	return a, nil
}

// negotiated is what the stream with the one peer negotiated, as
// advertised; "" for plain Hamlet or no stream.
func (a *agent) negotiated() string {
	for _, st := range a.manager.Status() {
		if st.Capabilities != nil {
			return st.Capabilities.String()
		}
	}
	return ""
}

func (a *agent) stop() error {
	a.cancel()
	<-a.done
	return a.store.Close()
}

// serveAgent runs an owner agent for the parent: its configuration is the
// first line of r, its address the first line written to w; it stops when r
// ends.
func serveAgent(r io.Reader, w io.Writer) error {
	br := bufio.NewReader(r)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	var cfg agentConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshfed-bench-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.StoreDir = dir
	a, err := startAgent(cfg)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, a.addr); err != nil {
		return errors.Join(err, a.stop())
	}
	_, _ = io.Copy(io.Discard, br)
	return a.stop()
}
