package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// maxAnswer bounds what the client reads of an answer; the catalog of a
// large federation fits many times over.
const maxAnswer = 64 << 20

// defaultHTTP is used when Client.HTTP is nil; its timeout keeps a command
// from hanging on an agent that accepts but never answers.
var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// Client reads the admin API of a running agent.
type Client struct {
	// BaseURL is the agent's admin address, such as http://127.0.0.1:19100;
	// AgentURL makes it from admin.listen.
	BaseURL string
	HTTP    *http.Client
	// Token, when set, is sent as a bearer token: an agent's admin API
	// answers clients beyond loopback only with admin.tokenFile's.
	Token string
}

// Get fetches path (such as /api/v1/status) and decodes its JSON into out;
// a nil out discards the answer.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, out)
}

// Post posts an empty JSON object to path (such as /api/v1/reload) and
// decodes the JSON answer into out; a nil out discards it. The agent
// takes a request that changes its state only as JSON, which a browser
// cannot send across sites.
func (c *Client) Post(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodPost, path, out)
}

// PostJSON posts in, as JSON, to path and decodes the JSON answer into
// out; a nil out discards it.
func (c *Client) PostJSON(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	return c.send(ctx, http.MethodPost, path, string(body), out)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	return c.send(ctx, method, path, "{}", out)
}

// send makes a request, with body for any method but GET.
func (c *Client) send(ctx context.Context, method, path, body string, out any) error {
	base := strings.TrimSuffix(c.BaseURL, "/")
	if base == "" {
		return errors.New("admin client: no agent address (BaseURL is empty)")
	}
	u := base + path
	var payload io.Reader
	if method != http.MethodGet {
		payload = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, payload)
	if err != nil {
		return fmt.Errorf("admin client: %q is not a URL: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, u, ctx.Err())
		}
		// url.Error repeats the method and URL that the message gives.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the meshfed agent at %s: %w (is `meshfed run` running, and is admin.listen this address?)", base, err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", u, err)
	}
	if len(answer) > maxAnswer {
		return fmt.Errorf("the answer of %s is larger than %d MiB; ask for less (a config dump takes ?type=clusters and the like)", u, maxAnswer>>20)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the meshfed agent at %s answered %s %s with %s: %s", base, method, path, resp.Status, reason(answer))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("decoding the answer of %s: %w", u, err)
	}
	return nil
}

// Download fetches path (such as /api/v1/store/backup) into w, however
// large, and fails unless the answer is 200 and as long as it said it
// would be: a copy cut short is no copy.
func (c *Client) Download(ctx context.Context, path string, w io.Writer) (int64, error) {
	base := strings.TrimSuffix(c.BaseURL, "/")
	if base == "" {
		return 0, errors.New("admin client: no agent address (BaseURL is empty)")
	}
	u := base + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("admin client: %q is not a URL: %w", u, err)
	}
	hc := c.HTTP
	if hc == nil {
		// No overall timeout: a large copy takes its time; ctx bounds it.
		hc = &http.Client{}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("cannot reach the meshfed agent at %s: %w (is `meshfed run` running, and is admin.listen this address?)", base, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return 0, fmt.Errorf("the meshfed agent at %s answered GET %s with %s: %s", base, path, resp.Status, reason(body))
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("reading the answer of %s: %w", u, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("the answer of %s was cut short: %d of %d bytes", u, n, resp.ContentLength)
	}
	return n, nil
}

// reason is the {"error": ...} text of a failed answer, or its first line
// when it is not ours (a 404 from the mux, a proxy's page).
func reason(body []byte) string {
	var e errorBody
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	if line == "" {
		return "(no body)"
	}
	return line
}

// AgentURL is the base URL that reaches an admin server listening on
// listen: an unspecified address (0.0.0.0, ::, or none) is reached on
// loopback.
func AgentURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("admin.listen: %q is not host:port: %w", listen, err)
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = "127.0.0.1"
		if err == nil && a.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}
