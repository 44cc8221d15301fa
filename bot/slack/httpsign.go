package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Slack's request signing (v0): X-Slack-Signature is
// "v0=" + hex(HMAC-SHA256(signing secret, "v0:" + X-Slack-Request-Timestamp + ":" + raw body)).

// ReplayWindow is how far a request's timestamp may be from now, either
// way, as Slack recommends.
const ReplayWindow = 5 * time.Minute

// Why a request is refused (401). The texts are fixed: they carry neither
// the secret nor what the request sent.
var (
	errUnsigned     = errors.New("missing X-Slack-Signature or X-Slack-Request-Timestamp")
	errStale        = errors.New("request timestamp is more than 5 minutes from now")
	errBadSignature = errors.New("signature does not match")
	errReplayed     = errors.New("request already received")
)

// verifier checks Slack's signature on a request.
type verifier struct {
	secret []byte
	now    func() time.Time
}

// verify checks hd's signature over body (the raw bytes, before any
// parsing): present, within ReplayWindow of now, and matching (compared
// in constant time). Whether the same request came before is for the
// caller: an event's retry may be signed exactly as its first delivery.
func (v *verifier) verify(hd http.Header, body []byte) error {
	ts, sig := hd.Get("X-Slack-Request-Timestamp"), hd.Get("X-Slack-Signature")
	if ts == "" || sig == "" {
		return errUnsigned
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errStale
	}
	if d := v.now().Sub(time.Unix(sec, 0)); d > ReplayWindow || d < -ReplayWindow {
		return errStale
	}
	got, err := hex.DecodeString(strings.TrimPrefix(sig, "v0="))
	if err != nil || !strings.HasPrefix(sig, "v0=") {
		return errBadSignature
	}
	if !hmac.Equal(got, mac(v.secret, ts, body)) {
		return errBadSignature
	}
	return nil
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(body)
	return m.Sum(nil)
}
