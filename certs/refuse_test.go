package certs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/model"
)

// svidFiles is one role's SVID files in a folder, issued by ca.
type svidFiles struct {
	t         *testing.T
	ca        *CA
	dir, name string
}

func (f svidFiles) cert() string { return filepath.Join(f.dir, f.name+".pem") }
func (f svidFiles) key() string  { return filepath.Join(f.dir, f.name+"-key.pem") }

// issue returns a new SVID's chain and key, not yet written.
func (f svidFiles) issue(path string, opts ...CertOption) ([]byte, PrivateKeyPEM) {
	f.t.Helper()
	chain, key, err := f.ca.Issue(mustID(f.t, f.ca.TrustDomain(), path), time.Hour, opts...)
	require.NoError(f.t, err)
	return chain, key
}

// write puts a pair in place, the key first, each by a rename.
func (f svidFiles) write(chain []byte, key PrivateKeyPEM) {
	f.t.Helper()
	require.NoError(f.t, writeFileAtomic(f.key(), key, keyMode))
	require.NoError(f.t, writeFileAtomic(f.cert(), chain, certMode))
}

// An SVID that is worse than the one in use is never taken: expired, not
// yet valid, of another trust domain, another role's, an ingress ID peers
// do not know, or with a key that is not its own. The last good SVID
// stays, the refusal is counted and kept in State until a good SVID
// loads; at start the same files are refused with the same error.
func TestFileSVIDNeverTakesAWorseSVID(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name string
		role model.Role
		path string
		opts []CertOption
		// other is an SVID of another CA (trust domain b.example).
		other, foreignKey bool
		want              string
	}{
		{name: "expired", role: model.Ingress, path: "/meshfed/gateway/ingress", opts: []CertOption{WithValidity(now.Add(-2*time.Hour), now.Add(-time.Hour))},
			want: "certs: the SVID spiffe://a.example/meshfed/gateway/ingress for role ingress (serial %x) expired at %s (in %s)"},
		{name: "not yet valid", role: model.Ingress, path: "/meshfed/gateway/ingress", opts: []CertOption{WithValidity(now.Add(time.Hour), now.Add(2*time.Hour))},
			want: "certs: the SVID spiffe://a.example/meshfed/gateway/ingress for role ingress (serial %x) is not valid before %s (is this host's clock right?) (in %s)"},
		{name: "another trust domain", role: model.Egress, path: "/meshfed/gateway/egress", other: true,
			want: `certs: SVID for role egress has SPIFFE ID spiffe://b.example/meshfed/gateway/egress, which is not in trust domain "a.example" (in %[3]s)`},
		{name: "another role's", role: model.Egress, path: "/meshfed/gateway/ingress",
			want: "certs: SVID for role egress has SPIFFE ID spiffe://a.example/meshfed/gateway/ingress, the ingress gateway's identity (are two roles' files swapped?) (in %[3]s)"},
		{name: "an ingress ID peers do not know", role: model.Ingress, path: "/ns/default/sa/ingress",
			want: "certs: SVID for role ingress has SPIFFE ID spiffe://a.example/ns/default/sa/ingress, but peers are told that this mesh's ingress gateway presents spiffe://a.example/meshfed/gateway/ingress and accept no other (in %[3]s)"},
		{name: "a key of another SVID", role: model.Ingress, path: "/meshfed/gateway/ingress", foreignKey: true,
			want: "certs: load SVID for role ingress from %[3]s: x509svid: private key validation failed: leaf certificate does not match private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newCA(t, tdA)
			f := svidFiles{t: t, ca: ca, dir: t.TempDir(), name: string(tc.role)}
			f.write(f.issue("/meshfed/gateway/" + string(tc.role)))
			core, logs := observer.New(zapcore.InfoLevel)
			m := newMetrics(t)
			cfg := FileSVIDConfig{Role: tc.role, CertFile: f.cert(), KeyFile: f.key(), TrustDomain: tdA, Settle: 100 * time.Millisecond}
			src, err := NewFileSVIDSource(cfg, zap.New(core), m)
			require.NoError(t, err)
			defer src.Close()
			good, err := src.GetX509SVID()
			require.NoError(t, err)
			changed, cancel := src.Subscribe()
			defer cancel()

			issuer := f
			if tc.other {
				issuer.ca = newCA(t, tdB)
			}
			chain, key := issuer.issue(tc.path, tc.opts...)
			if tc.foreignKey {
				_, key = f.issue(tc.path)
			}
			f.write(chain, key)
			leaf := parseLeaf(t, chain)
			when := leaf.NotAfter
			if tc.name == "not yet valid" {
				when = leaf.NotBefore
			}
			want := fmt.Sprintf(tc.want, leaf.SerialNumber, when.UTC().Format(time.RFC3339), f.cert())
			require.Eventually(t, func() bool { return src.State().Refused != "" }, waitTimeout, 10*time.Millisecond)
			st := src.State()
			require.Equal(t, want, st.Refused)
			require.Equal(t, fmt.Sprintf("%x", good.Certificates[0].SerialNumber), st.Serial, "the last good SVID is the one in use")
			cur, err := src.GetX509SVID()
			require.NoError(t, err)
			require.Same(t, good, cur)
			require.Equal(t, 1.0, counterValue(m.loadFailures.WithLabelValues(KindSVID, string(tc.role))))
			require.Len(t, logs.FilterLevelExact(zapcore.ErrorLevel).All(), 1)
			select {
			case <-changed:
				t.Fatal("a refused SVID was announced")
			default:
			}

			_, err = NewFileSVIDSource(cfg, zap.NewNop(), nil)
			require.EqualError(t, err, want, "at start")

			f.write(f.issue("/meshfed/gateway/" + string(tc.role)))
			waitSignal(t, changed)
			require.Empty(t, src.State().Refused, "a good SVID ends the refusal")
		})
	}
}

// A rotation that writes the certificate and the key as two files, in
// either order, by rename or in place, is one change once both are
// there: no refusal, no error line, nothing counted, and the gateways'
// sources see one new SVID. A pair that still does not match once the
// settle time has passed is refused, once.
func TestFileSVIDPairWrittenAsTwoFilesIsOneChange(t *testing.T) {
	inPlace := func(path string, data []byte) error { return os.WriteFile(path, data, 0o600) }
	rename := func(path string, data []byte) error { return writeFileAtomic(path, data, 0o600) }
	for _, tc := range []struct {
		name     string
		certLast bool
		write    func(string, []byte) error
	}{
		{"key then certificate, renamed", true, rename},
		{"certificate then key, renamed", false, rename},
		{"key then certificate, in place", true, inPlace},
		{"certificate then key, in place", false, inPlace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newCA(t, tdA)
			f := svidFiles{t: t, ca: ca, dir: t.TempDir(), name: "egress"}
			f.write(f.issue("/meshfed/gateway/egress"))
			core, logs := observer.New(zapcore.InfoLevel)
			m := newMetrics(t)
			src, err := NewFileSVIDSource(FileSVIDConfig{Role: model.Egress, CertFile: f.cert(), KeyFile: f.key(), TrustDomain: tdA, Settle: 2 * time.Second}, zap.New(core), m)
			require.NoError(t, err)
			defer src.Close()
			changed, cancel := src.Subscribe()
			defer cancel()

			chain, key := f.issue("/meshfed/gateway/egress")
			first, second := func() error { return tc.write(f.key(), key) }, func() error { return tc.write(f.cert(), chain) }
			if !tc.certLast {
				first, second = second, first
			}
			require.NoError(t, first())
			// Longer than the watcher's holdoff, so that the half-written
			// pair is read, and well within the settle time.
			time.Sleep(500 * time.Millisecond)
			require.NoError(t, second())
			waitSignal(t, changed)
			require.Equal(t, fmt.Sprintf("%x", parseLeaf(t, chain).SerialNumber), src.State().Serial)
			// Past the settle time of the half-written pair, nothing more.
			time.Sleep(2500 * time.Millisecond)
			require.Empty(t, src.State().Refused)
			require.Zero(t, counterValue(m.loadFailures.WithLabelValues(KindSVID, "egress")))
			require.Empty(t, logs.FilterLevelExact(zapcore.ErrorLevel).All())
			require.Equal(t, 1.0, counterValue(m.rotations.WithLabelValues(KindSVID, "egress")))

			// Only the key is written: still not matching once settled.
			_, other := f.issue("/meshfed/gateway/egress")
			require.NoError(t, tc.write(f.key(), other))
			require.Eventually(t, func() bool { return src.State().Refused != "" }, waitTimeout, 10*time.Millisecond)
			require.Contains(t, src.State().Refused, "x509svid: private key validation failed: leaf certificate does not match private key")
			require.Equal(t, 1.0, counterValue(m.loadFailures.WithLabelValues(KindSVID, "egress")))
			require.Len(t, logs.FilterLevelExact(zapcore.ErrorLevel).All(), 1)
		})
	}
}

// A certificate written before it is valid is refused, and taken when it
// becomes valid, with no further change on disk.
func TestFileSVIDNotYetValidIsTakenWhenValid(t *testing.T) {
	ca := newCA(t, tdA)
	f := svidFiles{t: t, ca: ca, dir: t.TempDir(), name: "egress"}
	f.write(f.issue("/meshfed/gateway/egress"))
	src, err := NewFileSVIDSource(FileSVIDConfig{Role: model.Egress, CertFile: f.cert(), KeyFile: f.key(), TrustDomain: tdA, Settle: 100 * time.Millisecond}, zap.NewNop(), nil)
	require.NoError(t, err)
	defer src.Close()
	changed, cancel := src.Subscribe()
	defer cancel()
	from := time.Now().Add(2 * time.Second)
	chain, key := f.issue("/meshfed/gateway/egress", WithValidity(from, from.Add(time.Hour)))
	f.write(chain, key)
	// A loaded machine may read the file only once it is valid: the
	// refusal is checked when it is seen, the taking always.
	serial := fmt.Sprintf("%x", parseLeaf(t, chain).SerialNumber)
	for time.Now().Before(from) && src.State().Refused == "" && src.State().Serial != serial {
		time.Sleep(10 * time.Millisecond)
	}
	if refused := src.State().Refused; refused != "" {
		require.Contains(t, refused, "is not valid before")
	}
	require.Eventually(t, func() bool { return src.State().Serial == serial }, time.Until(from)+waitTimeout, 10*time.Millisecond)
	// Certificates hold whole seconds: from, cut.
	require.False(t, time.Now().Before(parseLeaf(t, chain).NotBefore), "an SVID is taken once valid, not before")
	require.Empty(t, src.State().Refused)
	waitSignal(t, changed)
}

// A bundle file that does not parse, or holds no CA, is refused once it
// has lasted the settle time: the last good bundle stays, and its state
// says why until a good file is written.
func TestBundleFileRefusedStaysOut(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty", "", `for trust domain "b.example" has no X.509 authorities`},
		{"not PEM", "garbage\n", "x509bundle: cannot parse certificate: no PEM blocks found"},
		{"cut short", "-----BEGIN CERTIFICATE-----\nMIIB\n", "x509bundle: cannot parse certificate: no PEM blocks found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newCA(t, tdB)
			path := filepath.Join(t.TempDir(), "b.pem")
			require.NoError(t, writeFileAtomic(path, ca.CertPEM(), certMode))
			m := newMetrics(t)
			bundles := NewBundleSet(zap.NewNop(), m)
			defer bundles.Close()
			bundles.SetSettleTime(100 * time.Millisecond)
			require.NoError(t, bundles.AddFile(tdB, path))

			require.NoError(t, writeFileAtomic(path, []byte(tc.content), certMode))
			state := func() BundleState {
				for _, s := range bundles.States() {
					if s.TrustDomain == tdB.Name() {
						return s
					}
				}
				return BundleState{}
			}
			require.Eventually(t, func() bool { return state().LastError != "" }, waitTimeout, 10*time.Millisecond)
			require.Contains(t, state().LastError, tc.want)
			require.Equal(t, 1, state().Authorities, "the last good bundle stays")
			mat, err := bundles.Material(tdB)
			require.NoError(t, err)
			require.Equal(t, string(ca.CertPEM()), string(mat.PEM))
			require.Equal(t, 1.0, counterValue(m.loadFailures.WithLabelValues(KindBundle, tdB.Name())))

			require.NoError(t, writeFileAtomic(path, ca.CertPEM(), certMode))
			require.Eventually(t, func() bool { return state().LastError == "" }, waitTimeout, 10*time.Millisecond)
		})
	}
}
