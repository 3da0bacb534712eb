package snapshot

import (
	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	stream "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshfed/meshfed/model"
)

// stdoutLogger is Envoy's access logger to its standard output, where the
// gateway's own log goes: a container runtime collects both.
const stdoutLogger = "envoy.access_loggers.stdout"

// Access log lines are JSON objects, one per connection (tcp_proxy, an
// exported port's listener, and the ingress listener for a connection no
// export took) or per
// request (HTTP), with the fields an operator of a federation boundary
// needs: who called (the peer's SPIFFE ID and certificate serial), for what
// (SNI, filter chain, Host), what happened (response flags, TLS failure)
// and where it went (upstream host and cluster).
var (
	connectionLogFields = map[string]string{
		"start":            "%START_TIME%",
		"gateway":          "",
		"listener":         "%LISTENER_NAME%",
		"chain":            "%FILTER_CHAIN_NAME%",
		"downstream":       "%DOWNSTREAM_REMOTE_ADDRESS%",
		"sni":              "%REQUESTED_SERVER_NAME%",
		"peer":             "%DOWNSTREAM_PEER_URI_SAN%",
		"peer_serial":      "%DOWNSTREAM_PEER_SERIAL%",
		"tls_failure":      "%DOWNSTREAM_TRANSPORT_FAILURE_REASON%",
		"upstream":         "%UPSTREAM_HOST%",
		"cluster":          "%UPSTREAM_CLUSTER%",
		"upstream_peer":    "%UPSTREAM_PEER_URI_SAN%",
		"upstream_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
		"flags":            "%RESPONSE_FLAGS%",
		"bytes_in":         "%BYTES_RECEIVED%",
		"bytes_out":        "%BYTES_SENT%",
		"duration_ms":      "%DURATION%",
	}
	requestLogFields = map[string]string{
		"start":            "%START_TIME%",
		"gateway":          "",
		"listener":         "%LISTENER_NAME%",
		"downstream":       "%DOWNSTREAM_REMOTE_ADDRESS%",
		"method":           "%REQ(:METHOD)%",
		"authority":        "%REQ(:AUTHORITY)%",
		"path":             "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol":         "%PROTOCOL%",
		"code":             "%RESPONSE_CODE%",
		"grpc_status":      "%GRPC_STATUS%",
		"flags":            "%RESPONSE_FLAGS%",
		"upstream":         "%UPSTREAM_HOST%",
		"cluster":          "%UPSTREAM_CLUSTER%",
		"upstream_peer":    "%UPSTREAM_PEER_URI_SAN%",
		"upstream_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
		"bytes_in":         "%BYTES_RECEIVED%",
		"bytes_out":        "%BYTES_SENT%",
		"duration_ms":      "%DURATION%",
	}
)

// accessLogs is the one access log of a listener, tcp_proxy or HTTP
// connection manager of gateway role with the given fields; with types,
// only records of those types are logged.
func accessLogs(role model.Role, fields map[string]string, types ...accesslogdata.AccessLogType) []*accesslog.AccessLog {
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(fields))}
	for k, v := range fields {
		if k == "gateway" {
			v = string(role)
		}
		s.Fields[k] = structpb.NewStringValue(v)
	}
	cfg := &stream.StdoutAccessLog{AccessLogFormat: &stream.StdoutAccessLog_LogFormat{LogFormat: &core.SubstitutionFormatString{
		Format: &core.SubstitutionFormatString_JsonFormat{JsonFormat: s},
	}}}
	l := &accesslog.AccessLog{Name: stdoutLogger, ConfigType: &accesslog.AccessLog_TypedConfig{TypedConfig: mustAny(cfg)}}
	if len(types) > 0 {
		l.Filter = &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_LogTypeFilter{
			LogTypeFilter: &accesslog.LogTypeFilter{Types: types},
		}}
	}
	return []*accesslog.AccessLog{l}
}
