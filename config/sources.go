package config

import (
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults of policy_sources.etcd.
const (
	DefaultEtcdPrefix         = "/goipsec/policy/"
	DefaultEtcdDialTimeout    = 5 * time.Second
	DefaultEtcdRequestTimeout = 5 * time.Second
	DefaultEtcdResync         = time.Minute
	// DefaultEtcdCacheName is the cache file's name under
	// daemon.state_dir when policy_sources.etcd.cache is left out.
	DefaultEtcdCacheName = "etcd-policy.json"
)

// PolicySources lists where policy comes from besides the configuration
// file itself (section "policy_sources"). The file is always the first
// source, and enough on its own: the zero value means the file only.
// Read at start only.
type PolicySources struct {
	// Etcd, if not nil, adds the policy documents of an etcd cluster.
	Etcd *EtcdSource
}

// EtcdSource is an etcd cluster holding policy documents
// (policy_sources.etcd): every key under Prefix is one YAML document in
// the schema ParseFragment reads.
type EtcdSource struct {
	// Endpoints are the cluster's client URLs (http:// or https://).
	Endpoints []string
	// Prefix is the key prefix of the documents (default
	// DefaultEtcdPrefix).
	Prefix string
	// Labels are this host's labels, by which documents select their
	// hosts (their key "targets").
	Labels map[string]string
	// CertFile and KeyFile are the TLS client certificate and its key
	// (mode 0600), CAFile the CA certificates that verify the servers; all
	// empty means no TLS unless an endpoint is https://, then the system's
	// roots. Paths are resolved like other file references.
	CertFile, KeyFile, CAFile string
	// DialTimeout bounds the connection to the cluster and RequestTimeout
	// each read (defaults DefaultEtcdDialTimeout and
	// DefaultEtcdRequestTimeout).
	DialTimeout, RequestTimeout time.Duration
	// Resync is how often every document is read again besides watching
	// the prefix (default DefaultEtcdResync).
	Resync time.Duration
	// Cache is the file that keeps the documents of the last good policy,
	// read at start when the cluster cannot be reached (default
	// DefaultEtcdCacheName under daemon.state_dir).
	Cache string
}

// policySources reads section policy_sources.
func (d *decoder) policySources(ps *PolicySources, key string, n *yaml.Node) {
	d.mapping(n, key, []field{
		{"etcd", func(key string, n *yaml.Node) {
			e := &EtcdSource{Prefix: DefaultEtcdPrefix, DialTimeout: DefaultEtcdDialTimeout,
				RequestTimeout: DefaultEtcdRequestTimeout, Resync: DefaultEtcdResync}
			badEndpoint := false
			m := d.mapping(n, key, []field{
				{"endpoints", func(key string, n *yaml.Node) {
					for _, it := range d.list(n, key) {
						if !strings.HasPrefix(it.val, "http://") && !strings.HasPrefix(it.val, "https://") {
							d.fail(it.node, it.key, "must be a URL: http://host:port or https://host:port")
							badEndpoint = true
							continue
						}
						e.Endpoints = append(e.Endpoints, it.val)
					}
				}},
				{"prefix", func(key string, n *yaml.Node) {
					if s, vn, ok := d.scalar(n, key); ok {
						if !strings.HasPrefix(s, "/") || !strings.HasSuffix(s, "/") {
							d.fail(vn, key, "must start and end with '/', as in /goipsec/policy/")
							return
						}
						e.Prefix = s
					}
				}},
				{"labels", func(key string, n *yaml.Node) {
					e.Labels = make(map[string]string)
					for _, it := range d.list(n, key) {
						k, v, ok := strings.Cut(it.val, "=")
						if !ok || !validName(k) || !validName(v) {
							d.fail(it.node, it.key, "must be name=value, both of letters, digits, '.', '_' and '-'")
							continue
						}
						if _, dup := e.Labels[k]; dup {
							d.fail(it.node, it.key, "label %s given twice", k)
							continue
						}
						e.Labels[k] = v
					}
				}},
				{"cert", d.filePath(&e.CertFile)},
				{"key", func(key string, n *yaml.Node) {
					if p, vn, ok := d.scalar(n, key); ok {
						e.KeyFile = d.keyFile(p, vn, key)
					}
				}},
				{"ca", d.filePath(&e.CAFile)},
				{"dial_timeout", d.positiveDuration(&e.DialTimeout)},
				{"request_timeout", d.positiveDuration(&e.RequestTimeout)},
				{"resync", d.positiveDuration(&e.Resync)},
				{"cache", d.absPath(&e.Cache)},
			})
			if m == nil {
				if r := d.resolve(n); r != nil && isNull(r) {
					d.fail(r, key+".endpoints", "required: the cluster's client URLs")
				}
				return
			}
			if len(e.Endpoints) == 0 && !badEndpoint {
				d.fail(m, key+".endpoints", "required: the cluster's client URLs")
			}
			if (e.CertFile == "") != (e.KeyFile == "") {
				d.fail(m, key+".cert", "give cert and key together")
			}
			ps.Etcd = e
		}},
	})
}

// filePath reads a file path, resolved against the configuration file's
// directory; the daemon reads the file.
func (d *decoder) filePath(dst *string) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		if p, vn, ok := d.scalar(n, key); ok {
			if p == "" {
				d.fail(vn, key, "needs a file path")
				return
			}
			if !filepath.IsAbs(p) {
				p = filepath.Join(d.dir, p)
			}
			*dst = p
		}
	}
}

// positiveDuration reads a duration that must not be zero.
func (d *decoder) positiveDuration(dst *time.Duration) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		const unset = time.Duration(-1) // no value duration sets
		v := unset
		d.duration(&v)(key, n)
		switch {
		case v == unset: // reported
		case v == 0:
			d.fail(n, key, "must be longer than 0s")
		default:
			*dst = v
		}
	}
}
