package ipsec_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/netip"
	"os"

	"github.com/goipsec/goipsec"
)

// Example runs goipsec inside a program without privileges: the
// configuration file (as for ipsecd) describes a connection from this
// program's inner address 10.1.0.1 to the network 10.2.0.0/16 behind a
// gateway, with start_action trap. The first request through the Server's
// Dial triggers IKE on the unprivileged ports, and HTTP then runs over ESP
// in UDP. Nothing on the host changes: no TUN device, routes or firewall
// rules.
func Example() {
	srv := &ipsec.Server{
		ConfigFile: "goipsec.yaml",
		Netstack: &ipsec.Netstack{
			Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.1")},
			IKEPort:   1500, NATTPort: 14500,
			// The gateway listens on the standard ports.
			PeerIKEPort: 500, PeerNATTPort: 4500,
		},
	}
	if err := srv.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{DialContext: srv.Dial}}
	resp, err := client.Get("http://10.2.0.80/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(os.Stdout, resp.Body)

	// Serve HTTP to the peer's network, reachable only through the tunnel.
	l, err := srv.Listen("tcp", "10.1.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello through IPsec\n")
	}))
}
