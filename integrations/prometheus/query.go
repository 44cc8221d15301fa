package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// maxResponse bounds how much of a Prometheus answer is read.
const maxResponse = 4 << 20

// ErrNoData is returned (wrapped) when a query matches no series.
var ErrNoData = errors.New("query returned no data")

// apiResponse is the envelope of every Prometheus HTTP API answer.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  []json.RawMessage `json:"value"`
}

// Query runs an instant query and returns its single value.
func (m *Metrics) Query(ctx context.Context, promql string) (float64, error) {
	if m.base == nil {
		return 0, m.baseErr
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	endpoint := m.base.JoinPath("api", "v1", "query")
	form := url.Values{"query": {promql}, "timeout": {promDuration(m.cfg.Timeout)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return 0, fmt.Errorf("cannot build the Prometheus request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	for k, v := range m.cfg.Headers {
		req.Header.Set(k, v)
	}
	where := shownURL(m.base)
	resp, err := m.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, credentials included
		}
		return 0, fmt.Errorf("no answer from Prometheus at %s: %v (query: %s)", where, err, promql)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return 0, fmt.Errorf("reading Prometheus' answer from %s: %v", where, err)
	}
	var ar apiResponse
	if err := json.Unmarshal(data, &ar); err != nil || ar.Status == "" {
		return 0, fmt.Errorf("unexpected answer from Prometheus at %s, %s: %s", where, resp.Status, excerpt(string(data)))
	}
	if ar.Status != "success" {
		return 0, fmt.Errorf("the query was rejected by Prometheus (%s: %s): %s", ar.ErrorType, ar.Error, promql)
	}
	v, err := sampleValue(ar.Data)
	if err != nil {
		return 0, fmt.Errorf("%w (query: %s)", err, promql)
	}
	return v, nil
}

// sampleValue extracts the one value of a scalar or single-series vector.
func sampleValue(raw json.RawMessage) (float64, error) {
	var d queryData
	if err := json.Unmarshal(raw, &d); err != nil {
		return 0, fmt.Errorf("unexpected Prometheus answer: %v", err)
	}
	switch d.ResultType {
	case "scalar":
		var pair []json.RawMessage
		if err := json.Unmarshal(d.Result, &pair); err != nil {
			return 0, fmt.Errorf("unexpected scalar result: %v", err)
		}
		return pointValue(pair)
	case "vector":
		var vec []vectorSample
		if err := json.Unmarshal(d.Result, &vec); err != nil {
			return 0, fmt.Errorf("unexpected vector result: %v", err)
		}
		switch len(vec) {
		case 0:
			return 0, ErrNoData
		case 1:
			return pointValue(vec[0].Value)
		}
		shown := make([]string, 0, 3)
		for _, s := range vec[:min(3, len(vec))] {
			shown = append(shown, labelSet(s.Metric))
		}
		more := ""
		if len(vec) > 3 {
			more = ", …"
		}
		return 0, fmt.Errorf("query returned %d series (%s%s), not one value; aggregate it, e.g. max(...) or sum(...)", len(vec), strings.Join(shown, ", "), more)
	case "matrix":
		return 0, errors.New("query returned a range vector; a metric must be an instant value (drop the [range] or wrap it in a function such as avg_over_time)")
	}
	return 0, fmt.Errorf("query returned a %s, not a number", d.ResultType)
}

// pointValue parses a [timestamp, "value"] pair.
func pointValue(pair []json.RawMessage) (float64, error) {
	if len(pair) != 2 {
		return 0, errors.New("unexpected sample shape in Prometheus' answer")
	}
	var s string
	if err := json.Unmarshal(pair[1], &s); err != nil {
		return 0, fmt.Errorf("unexpected sample value %s", pair[1])
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("unexpected sample value %q", s)
	}
	if math.IsNaN(v) {
		return 0, errors.New("query returned NaN (a division by zero, or a missing limit?)")
	}
	return v, nil
}

func labelSet(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func excerpt(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		cut := 200
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}
