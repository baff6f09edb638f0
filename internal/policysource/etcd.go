package policysource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/goipsec/goipsec/config"
)

// etcdClient is a Client over go.etcd.io/etcd/client/v3.
type etcdClient struct {
	c *clientv3.Client
}

// Dial returns a Client for the cluster e describes, with TLS when e names
// certificates or an endpoint is https://. It does not wait for the
// cluster: reads fail until it answers.
func Dial(e config.EtcdSource) (Client, error) {
	var tc *tls.Config
	if e.CertFile != "" || e.CAFile != "" || anyHTTPS(e.Endpoints) {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
		if e.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("policysource: etcd client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		if e.CAFile != "" {
			pem, err := os.ReadFile(e.CAFile)
			if err != nil {
				return nil, fmt.Errorf("policysource: etcd CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("policysource: etcd CA %s: no PEM certificate", e.CAFile)
			}
			tc.RootCAs = pool
		}
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   e.Endpoints,
		DialTimeout: e.DialTimeout,
		TLS:         tc,
		// Dead connections are noticed within seconds, so that the
		// client moves on to another member.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("policysource: etcd: %w", err)
	}
	return etcdClient{c}, nil
}

func anyHTTPS(endpoints []string) bool {
	for _, e := range endpoints {
		if strings.HasPrefix(e, "https://") {
			return true
		}
	}
	return false
}

func (e etcdClient) Get(ctx context.Context, prefix string) ([]Document, int64, error) {
	resp, err := e.c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, err
	}
	docs := make([]Document, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		docs[i] = Document{Key: string(kv.Key), Value: string(kv.Value)}
	}
	return docs, resp.Header.Revision, nil
}

func (e etcdClient) Watch(ctx context.Context, prefix string, rev int64) <-chan error {
	out := make(chan error, 1)
	// WithRequireLeader ends the watch when the member loses its leader,
	// so that a partitioned member does not keep us on a stale view.
	wch := e.c.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	go func() {
		defer close(out)
		for wr := range wch {
			if err := wr.Err(); err != nil {
				select {
				case out <- err:
				case <-ctx.Done():
				}
				return
			}
			select {
			case out <- nil:
			default: // a change is pending already; the next read sees this one too
			}
		}
		if ctx.Err() == nil {
			select {
			case out <- errors.New("watch closed"):
			case <-ctx.Done():
			}
		}
	}()
	return out
}

func (e etcdClient) Close() error { return e.c.Close() }
