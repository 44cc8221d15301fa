package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/runbookbot/runbookbot/commands/api"
)

// specCheck validates requests and responses against openapi.yaml.
type specCheck struct {
	t      *testing.T
	router routers.Router
}

var loadSpec = sync.OnceValues(func() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(context.Background())
})

func newSpecCheck(t *testing.T) *specCheck {
	t.Helper()
	doc, err := loadSpec()
	if err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	// Match paths whatever host the test server has.
	d := *doc
	d.Servers = openapi3.Servers{{URL: "http://{host}/api/v1", Variables: map[string]*openapi3.ServerVariable{"host": {Default: "localhost"}}}}
	router, err := gorillamux.NewRouter(&d)
	if err != nil {
		t.Fatal(err)
	}
	return &specCheck{t: t, router: router}
}

func init() {
	openapi3filter.RegisterBodyDecoder("text/event-stream", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	})
	openapi3filter.RegisterBodyDecoder("application/yaml", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	})
}

// wrap checks every request the handler gets and every answer it gives.
func (c *specCheck) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		check := r.Clone(context.Background())
		check.Body = io.NopCloser(bytes.NewReader(body))
		check.Host = "localhost"
		check.URL.Scheme, check.URL.Host = "http", "localhost"
		rec := &teeWriter{ResponseWriter: w}
		h.ServeHTTP(rec, r)

		route, params, err := c.router.FindRoute(check)
		if err != nil {
			if rec.status != http.StatusNotFound && rec.status != http.StatusMethodNotAllowed {
				c.t.Errorf("%s %s answered %d but is not in openapi.yaml: %v", r.Method, r.URL.Path, rec.status, err)
			}
			return
		}
		in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
		// A request the server served must match the document (those it
		// refused as bad are meant not to).
		if rec.status < 400 {
			if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
				c.t.Errorf("%s %s was served (%d) but does not match openapi.yaml: %v", r.Method, r.URL.Path, rec.status, err)
			}
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.status, Header: rec.Header(),
			Body: io.NopCloser(bytes.NewReader(rec.buf.Bytes())), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			c.t.Errorf("%s %s answered %d, which openapi.yaml does not describe: %v\nbody: %s", r.Method, r.URL.Path, rec.status, err, trim(rec.buf.String()))
		}
	})
}

func trim(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return strings.TrimSpace(s)
}

// teeWriter passes an answer through (streams included) and keeps a copy.
type teeWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (w *teeWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *teeWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.buf.Write(b)
	return w.ResponseWriter.Write(b)
}

func (w *teeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func TestOpenAPIDocumentIsServedAndValid(t *testing.T) {
	r := newRig(t)
	resp := r.do("GET", "/api/v1/openapi.yaml", "", nil)
	if resp.status != http.StatusOK || resp.raw != string(api.OpenAPI) {
		t.Fatalf("GET /api/v1/openapi.yaml without a token: %d, want 200 and the document", resp.status)
	}
	doc, err := loadSpec()
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	// Every documented operation exists on the server: an unauthenticated
	// call gets the API's 401, not the 404 or 405 of a missing route.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if path == "/openapi.yaml" {
				continue
			}
			p := strings.ReplaceAll(path, "{id}", "some-id")
			if got := r.do(method, "/api/v1"+p, "", nil).status; got != http.StatusUnauthorized {
				t.Errorf("%s %s without a token = %d, want 401 (is the route served?)", method, p, got)
			}
		}
	}
}
