package session

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc/codes"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
)

// Metrics count what crosses Hamlet streams. A nil *Metrics counts nothing.
type Metrics struct {
	sentTotal     *prometheus.CounterVec
	answersTotal  *prometheus.CounterVec
	receivedTotal *prometheus.CounterVec
	unnegotiated  *prometheus.CounterVec
	reconciles    *prometheus.CounterVec
	reconciledOut *prometheus.CounterVec
}

// NewMetrics registers the stream counters on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(prometheus.WrapRegistererWithPrefix("meshfed_hamlet_", reg))
	return &Metrics{
		sentTotal: f.NewCounterVec(prometheus.CounterOpts{
			Name: "responses_sent_total",
			Help: "Services this agent published, by peer and operation; each of a response of several counts.",
		}, []string{"peer", "operation"}),
		answersTotal: f.NewCounterVec(prometheus.CounterOpts{
			Name: "answers_received_total",
			Help: "Answers peers sent for the services this agent published, by peer and gRPC code (OK for an ACK); each service of a response of several counts.",
		}, []string{"peer", "code"}),
		receivedTotal: f.NewCounterVec(prometheus.CounterOpts{
			Name: "responses_received_total",
			Help: "Services peers published to this agent, by peer, operation and the gRPC code this agent answered; each of a response of several counts.",
		}, []string{"peer", "operation", "code"}),
		unnegotiated: f.NewCounterVec(prometheus.CounterOpts{
			Name: "unnegotiated_extension_total",
			Help: "Extension messages peers sent on streams that did not negotiate the extension; they are ignored.",
		}, []string{"peer", "extension"}),
		reconciles: f.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciliations_total",
			Help: "Times the imports of a peer were reconciled with the full catalog it sent on a new stream.",
		}, []string{"peer"}),
		reconciledOut: f.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciled_removed_total",
			Help: "Imports removed by reconciliations because the peer's full catalog no longer held them.",
		}, []string{"peer"}),
	}
}

func (m *Metrics) sent(peer string, op discoverypb.StreamResponse_Operation) {
	if m != nil {
		m.sentTotal.WithLabelValues(peer, op.String()).Inc()
	}
}

func (m *Metrics) answered(peer string, code codes.Code) {
	if m != nil {
		m.answersTotal.WithLabelValues(peer, code.String()).Inc()
	}
}

func (m *Metrics) received(peer string, op discoverypb.StreamResponse_Operation, code codes.Code) {
	if m != nil {
		m.receivedTotal.WithLabelValues(peer, op.String(), code.String()).Inc()
	}
}

func (m *Metrics) unnegotiatedExt(peer, extension string) {
	if m != nil {
		m.unnegotiated.WithLabelValues(peer, extension).Inc()
	}
}

func (m *Metrics) reconciled(peer string, removed int) {
	if m != nil {
		m.reconciles.WithLabelValues(peer).Inc()
		m.reconciledOut.WithLabelValues(peer).Add(float64(removed))
	}
}
