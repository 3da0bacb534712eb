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

// Access log lines are JSON objects, one per connection or per request
// (HTTP), with the fields an operator of a federation boundary needs: who
// called (the peer's SPIFFE ID and certificate serial), for what (SNI,
// filter chain, Host), what happened (response flags, TLS failure, the
// ingress's reason for a refusal) and where it went (upstream host and
// cluster).
//
// The ingress logs every connection when it ends on its TLS listener,
// refused or not, with the reason of a refusal; an accepted caller once
// more when it is handed to the router, which logs the connection again
// when it ends, with the export port it reached.
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
	// ingressLogFields are those of the ingress TLS listener: the reason
	// names why a connection was refused, empty when it was not.
	ingressLogFields = withFields(connectionLogFields, map[string]string{"reason": "%CEL(" + refusalReason + ")%"})
	// acceptedLogFields are the line of a caller the ingress let in.
	acceptedLogFields = map[string]string{
		"start":       "%START_TIME%",
		"gateway":     "",
		"event":       "accepted",
		"listener":    "%LISTENER_NAME%",
		"chain":       "%FILTER_CHAIN_NAME%",
		"downstream":  "%DOWNSTREAM_REMOTE_ADDRESS%",
		"sni":         "%REQUESTED_SERVER_NAME%",
		"peer":        "%DOWNSTREAM_PEER_URI_SAN%",
		"peer_serial": "%DOWNSTREAM_PEER_SERIAL%",
	}
	// routerLogFields are those of the ingress router, whose connections
	// come from the TLS listener: the caller's SNI, identity and address
	// are in their filter state.
	routerLogFields = map[string]string{
		"start":       "%START_TIME%",
		"gateway":     "",
		"listener":    "%LISTENER_NAME%",
		"chain":       "%FILTER_CHAIN_NAME%",
		"downstream":  "%FILTER_STATE(" + downstreamKey + ":PLAIN)%",
		"sni":         "%FILTER_STATE(" + serverNameKey + ":PLAIN)%",
		"peer":        "%FILTER_STATE(" + callerKey + ":PLAIN)%",
		"upstream":    "%UPSTREAM_HOST%",
		"cluster":     "%UPSTREAM_CLUSTER%",
		"flags":       "%RESPONSE_FLAGS%",
		"details":     "%CONNECTION_TERMINATION_DETAILS%",
		"bytes_in":    "%BYTES_RECEIVED%",
		"bytes_out":   "%BYTES_SENT%",
		"duration_ms": "%DURATION%",
	}
	requestLogFields = map[string]string{
		"start":       "%START_TIME%",
		"gateway":     "",
		"listener":    "%LISTENER_NAME%",
		"downstream":  "%DOWNSTREAM_REMOTE_ADDRESS%",
		"method":      "%REQ(:METHOD)%",
		"authority":   "%REQ(:AUTHORITY)%",
		"path":        "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol":    "%PROTOCOL%",
		"code":        "%RESPONSE_CODE%",
		"grpc_status": "%GRPC_STATUS%",
		"flags":       "%RESPONSE_FLAGS%",
		// The import's route: its cluster is its upstream's, shared.
		"route":            "%ROUTE_NAME%",
		"upstream":         "%UPSTREAM_HOST%",
		"cluster":          "%UPSTREAM_CLUSTER%",
		"upstream_peer":    "%UPSTREAM_PEER_URI_SAN%",
		"upstream_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
		"bytes_in":         "%BYTES_RECEIVED%",
		"bytes_out":        "%BYTES_SENT%",
		"duration_ms":      "%DURATION%",
	}
)

// refusalReason says, in CEL over Envoy's connection attributes, why the
// ingress TLS listener refused a connection: no chain took it (it was not
// TLS, had no server name, or one nobody exports), or its handshake failed
// (no client certificate, one no consumer's bundle signed, or an identity
// that is not a caller of the export) or did not complete; empty for a
// connection let in, which alone has an upstream.
const refusalReason = "" +
	"!has(xds.filter_chain_name) || xds.filter_chain_name == '' ? (" +
	"has(connection.transport_failure_reason) && connection.transport_failure_reason != '' ? 'not TLS' : " +
	"!has(connection.requested_server_name) || connection.requested_server_name == '' ? 'no server name' : " +
	"'no export has this server name') : " +
	"has(upstream.address) ? '' : " +
	"!has(connection.transport_failure_reason) || connection.transport_failure_reason == '' ? 'handshake not completed' : " +
	"connection.transport_failure_reason.contains('SAN') ? 'caller not authorized' : " +
	"connection.transport_failure_reason.contains('PEER_DID_NOT_RETURN_A_CERTIFICATE') ? 'no client certificate' : " +
	"connection.transport_failure_reason.contains('CERTIFICATE_VERIFY_FAILED') ? 'certificate not trusted' : " +
	"'handshake failed'"

func withFields(base, more map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(more))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

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
	format := &core.SubstitutionFormatString{Format: &core.SubstitutionFormatString_JsonFormat{JsonFormat: s}}
	cfg := &stream.StdoutAccessLog{AccessLogFormat: &stream.StdoutAccessLog_LogFormat{LogFormat: format}}
	l := &accesslog.AccessLog{Name: stdoutLogger, ConfigType: &accesslog.AccessLog_TypedConfig{TypedConfig: mustAny(cfg)}}
	if len(types) > 0 {
		l.Filter = &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_LogTypeFilter{
			LogTypeFilter: &accesslog.LogTypeFilter{Types: types},
		}}
	}
	return []*accesslog.AccessLog{l}
}
