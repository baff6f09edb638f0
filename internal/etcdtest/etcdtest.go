// Package etcdtest runs a real etcd cluster for tests: Debian's
// etcd-server (3.4) members started and stopped by PID, on loopback or in a
// network namespace, each with its own data directory under t.TempDir().
// In a namespace, the test writes keys with etcdctl (Debian's etcd-client)
// run in that namespace.
package etcdtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/goipsec/goipsec/internal/testenv"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	t         testing.TB
	Members   []*Member
	Endpoints []string
	client    *clientv3.Client // nil in a namespace
	etcdctl   []string         // the etcdctl command line in a namespace
}

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string
	args      []string
	netns     string
	cmd       *exec.Cmd
	done      chan struct{}
}

// Start starts a cluster of n members listening on host. With netns not
// empty the members run in that network namespace (and host must be one of
// its addresses, ports then start at 23790); else host is a loopback
// address and the ports are free ones. The members are killed when the
// test ends.
func Start(t testing.TB, n int, host, netns string) *Cluster {
	t.Helper()
	return StartTLS(t, n, host, netns, nil)
}

// TLS are the files of a cluster that serves clients over TLS and asks
// for their certificates (etcd's --client-cert-auth): the servers' own
// certificate and key, the CA that signs client certificates, and the
// client certificate that the test's own client presents.
type TLS struct {
	ServerCert, ServerKey, ClientCA string
	ClientCert, ClientKey           string
}

// StartTLS is Start with client connections over TLS when tc is not nil
// (loopback only: the test's client needs tc's client certificate).
func StartTLS(t testing.TB, n int, host, netns string, tc *TLS) *Cluster {
	t.Helper()
	scheme := "http://"
	if tc != nil {
		scheme = "https://"
	}
	bin := testenv.RequireCommand(t, "etcd")
	dir := t.TempDir()
	ports := make([]int, 2*n)
	for i := range ports {
		if netns != "" {
			ports[i] = 23790 + i
		} else {
			ports[i] = freePort(t, host)
		}
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, net.JoinHostPort(host, fmt.Sprint(ports[n+i]))))
	}
	c := &Cluster{t: t}
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), ClientURL: scheme + net.JoinHostPort(host, fmt.Sprint(ports[i])), netns: netns}
		peer := "http://" + net.JoinHostPort(host, fmt.Sprint(ports[n+i]))
		m.args = []string{bin, "--name", m.Name, "--data-dir", filepath.Join(dir, m.Name),
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "goipsec-test",
			"--heartbeat-interval", "50", "--election-timeout", "500", "--logger", "zap", "--log-outputs", filepath.Join(dir, m.Name+".log")}
		if tc != nil {
			m.args = append(m.args, "--cert-file", tc.ServerCert, "--key-file", tc.ServerKey,
				"--client-cert-auth", "--trusted-ca-file", tc.ClientCA)
		}
		c.Members = append(c.Members, m)
		c.Endpoints = append(c.Endpoints, m.ClientURL)
	}
	t.Cleanup(c.stopAll)
	for _, m := range c.Members {
		m.start(t, "new")
	}
	if netns == "" {
		cfg := clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
		if tc != nil {
			cert, err := tls.LoadX509KeyPair(tc.ClientCert, tc.ClientKey)
			if err != nil {
				t.Fatal(err)
			}
			pem, err := os.ReadFile(tc.ClientCA)
			if err != nil {
				t.Fatal(err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}
		}
		cl, err := clientv3.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.client = cl
		t.Cleanup(func() { cl.Close() })
	} else {
		// The test's own sockets are in the root namespace: etcdctl
		// runs in the members' namespace instead.
		c.etcdctl = []string{"ip", "netns", "exec", netns, testenv.RequireCommand(t, "etcdctl"),
			"--endpoints", strings.Join(c.Endpoints, ","), "--dial-timeout", "2s", "--command-timeout", "5s"}
	}
	c.WaitHealthy()
	return c
}

func freePort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (m *Member) start(t testing.TB, state string) {
	t.Helper()
	args := append(m.args, "--initial-cluster-state", state)
	if m.netns != "" {
		args = append([]string{"ip", "netns", "exec", m.netns}, args...)
	}
	// ip netns exec replaces itself with etcd: the PID is etcd's.
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("etcd %s: %v", m.Name, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(m.done)
}

// Kill kills the member by its PID (SIGKILL) and waits for it.
func (m *Member) Kill() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.done
	m.cmd = nil
}

// Restart starts a killed member again with its data.
func (c *Cluster) Restart(m *Member) {
	c.t.Helper()
	m.start(c.t, "existing")
}

func (c *Cluster) stopAll() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// WaitHealthy waits up to 30 s until the cluster answers a linearizable
// read.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.do(time.Second, func(ctx context.Context) error { _, err := c.client.Get(ctx, "health"); return err }, "get", "health")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcd cluster %v not healthy within 30 s: %v", c.Endpoints, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Put writes key, retrying for up to 20 s (an election after a member was
// killed fails requests for a while), and fails the test if the cluster
// does not take it.
func (c *Cluster) Put(key, value string) {
	c.t.Helper()
	c.retry(func(ctx context.Context) error { _, err := c.client.Put(ctx, key, value); return err }, "put", key, value)
}

// Delete removes key, retrying as Put does.
func (c *Cluster) Delete(key string) {
	c.t.Helper()
	c.retry(func(ctx context.Context) error { _, err := c.client.Delete(ctx, key); return err }, "del", key)
}

func (c *Cluster) retry(f func(context.Context) error, etcdctl ...string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := c.do(5*time.Second, f, etcdctl...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcd %s: %v", etcdctl[0], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// do runs f with the client, or the etcdctl command in a namespace.
func (c *Cluster) do(timeout time.Duration, f func(context.Context) error, etcdctl ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if c.client != nil {
		return f(ctx)
	}
	args := append(slices.Clone(c.etcdctl), etcdctl...)
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}
