package k8s

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the cluster's certificates and keys, all written under dir as PEM.
type pki struct {
	dir string

	CACert, CAKey                 string // cluster CA; also the controller-manager's signing pair
	ServingCert, ServingKey       string // kube-apiserver's serving cert
	KubeletCert, KubeletKey       string // kwok's serving cert (its kubelet endpoint)
	AdminCert, AdminKey           string // client cert, O=system:masters
	SAKey, SAPub                  string // service-account signing key pair (RSA)
	caPEM, adminCertPEM, adminKey []byte
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func writePEM(path, typ string, der []byte) ([]byte, error) {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	return b, os.WriteFile(path, b, 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

// newPKI generates a CA, the serving and client certificates and the
// service-account keys in dir. ECDSA P-256 for certificates (fast to make);
// RSA for service accounts, as kube-apiserver's defaults expect.
func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{dir: dir}
	now := time.Now().Add(-time.Hour)
	notAfter := now.Add(10 * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "runbookbot-test-ca"},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	ca := keyPair{caCert, caKey}
	p.CACert, p.CAKey = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if p.caPEM, err = writePEM(p.CACert, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if err := writeKey(p.CAKey, caKey); err != nil {
		return nil, err
	}

	type leaf struct {
		name      string
		subject   pkix.Name
		usage     []x509.ExtKeyUsage
		ips       []net.IP
		dns       []string
		cert, key *string
	}
	leaves := []leaf{
		{
			name:    "apiserver",
			subject: pkix.Name{CommonName: "kube-apiserver"},
			usage:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			ips:     []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster", "kubernetes.default.svc.cluster.local"},
			cert: &p.ServingCert, key: &p.ServingKey,
		},
		{
			name:    "kubelet",
			subject: pkix.Name{CommonName: NodeName},
			usage:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			ips:     []net.IP{net.ParseIP("127.0.0.1")},
			dns:     []string{"localhost", NodeName},
			cert:    &p.KubeletCert, key: &p.KubeletKey,
		},
		{
			name:    "admin",
			subject: pkix.Name{CommonName: "runbookbot-test-admin", Organization: []string{"system:masters"}},
			usage:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			cert:    &p.AdminCert, key: &p.AdminKey,
		},
	}
	for _, l := range leaves {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               l.subject,
			NotBefore:             now,
			NotAfter:              notAfter,
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:           l.usage,
			BasicConstraintsValid: true,
			IPAddresses:           l.ips,
			DNSNames:              l.dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
		if err != nil {
			return nil, fmt.Errorf("%s cert: %w", l.name, err)
		}
		*l.cert, *l.key = filepath.Join(dir, l.name+".crt"), filepath.Join(dir, l.name+".key")
		certPEM, err := writePEM(*l.cert, "CERTIFICATE", der)
		if err != nil {
			return nil, err
		}
		if err := writeKey(*l.key, key); err != nil {
			return nil, err
		}
		if l.name == "admin" {
			p.adminCertPEM = certPEM
			if p.adminKey, err = os.ReadFile(*l.key); err != nil {
				return nil, err
			}
		}
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	p.SAKey, p.SAPub = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := writeKey(p.SAKey, saKey); err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	if _, err := writePEM(p.SAPub, "PUBLIC KEY", pubDER); err != nil {
		return nil, err
	}
	return p, nil
}

func writeKey(path string, key crypto.Signer) error {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		_, err := writePEM(path, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
		return err
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return err
		}
		_, err = writePEM(path, "EC PRIVATE KEY", der)
		return err
	}
	return fmt.Errorf("unsupported key type %T", key)
}
