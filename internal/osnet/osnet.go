// Package osnet sets up the host's routing for the userspace data plane:
// routes that send protected (and discarded) destinations into the TUN device,
// kept in their own routing table, and the policy rule that consults that table
// only for packets without the daemon's firewall mark. The daemon's own
// sockets carry the mark, so its encrypted packets take the main table and
// never loop back into the TUN (the scheme wg-quick uses). A Filter keeps an
// nftables table that drops cleartext from the network where a PROTECT or
// DISCARD policy applies.
//
// Only cmd/ipsecd and tests use it: engines get their OS resources injected.
package osnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route is one destination routed into the TUN device.
type Route struct {
	Dst netip.Prefix
	Src netip.Addr // preferred source address; zero: the kernel picks
}

// Router manages the routes of one TUN device in one table. Safe for
// concurrent use.
type Router struct {
	link  netlink.Link
	table int
	mark  uint32
	prio  int

	mu     sync.Mutex
	routes []Route
	rules  []*netlink.Rule
}

// New brings the TUN device up and installs, for IPv4 and IPv6, the rule
// "not fwmark MARK lookup TABLE" at priority prio. It also turns off reverse
// path filtering on the TUN device so that decapsulated packets are accepted.
func New(dev string, table int, mark uint32, prio int) (*Router, error) {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("osnet: %s: %w", dev, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("osnet: setting %s up: %w", dev, err)
	}
	// The TUN device carries only routed traffic: no IPv6 link-local
	// address, router solicitations or multicast listener reports of its
	// own, which would otherwise be read back by the data plane.
	for key, val := range map[string]string{"addr_gen_mode": "1", "accept_ra": "0", "router_solicitations": "0"} {
		os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/"+key, []byte(val), 0)
	}
	netlink.LinkSetMulticastOff(link)
	if addrs, err := netlink.AddrList(link, unix.AF_INET6); err == nil {
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() {
				netlink.AddrDel(link, &a)
			}
		}
	}
	r := &Router{link: link, table: table, mark: mark, prio: prio}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rule := netlink.NewRule()
		rule.Family = fam
		rule.Table = table
		rule.Mark = mark
		rule.Invert = true
		rule.Priority = prio
		if err := netlink.RuleAdd(rule); err != nil && !errors.Is(err, unix.EEXIST) {
			r.Close()
			return nil, fmt.Errorf("osnet: adding rule not fwmark %#x lookup %d: %w", mark, table, err)
		}
		r.rules = append(r.rules, rule)
	}
	// Best effort: a missing sysctl only matters with strict rp_filter.
	os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/rp_filter", []byte("0"), 0)
	return r, nil
}

// Set makes routes the routes into the TUN device, adding the new ones and
// deleting those no longer wanted.
func (r *Router) Set(routes []Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, old := range r.routes {
		if !slices.Contains(routes, old) {
			if err := netlink.RouteDel(r.nlRoute(old)); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("osnet: deleting route %s: %w", old.Dst, err))
			}
		}
	}
	var now []Route
	for _, rt := range routes {
		if err := netlink.RouteReplace(r.nlRoute(rt)); err != nil {
			errs = append(errs, fmt.Errorf("osnet: route %s dev %s table %d: %w", rt.Dst, r.link.Attrs().Name, r.table, err))
			continue
		}
		now = append(now, rt)
	}
	r.routes = now
	return errors.Join(errs...)
}

func (r *Router) nlRoute(rt Route) *netlink.Route {
	p := rt.Dst.Masked()
	nr := &netlink.Route{
		LinkIndex: r.link.Attrs().Index,
		Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Table:     r.table,
		Scope:     netlink.SCOPE_LINK,
	}
	if rt.Src.IsValid() {
		nr.Src = rt.Src.AsSlice()
	}
	return nr
}

// Close removes the routes and rules this Router added.
func (r *Router) Close() error {
	err := r.Set(nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rule := range r.rules {
		netlink.RuleDel(rule)
	}
	r.rules = nil
	return err
}

// LocalAddrs returns the addresses of the host's interfaces, for choosing
// route source addresses.
func LocalAddrs() []netip.Addr {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range ifaddrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// SourceAddr returns the address the host would send from to reach remote
// (a route lookup), for IKE peers configured without a local address.
func SourceAddr(remote netip.Addr) (netip.Addr, error) {
	routes, err := netlink.RouteGet(remote.AsSlice())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("osnet: route to %s: %w", remote, err)
	}
	for _, r := range routes {
		if a, ok := netip.AddrFromSlice(r.Src); ok && a.IsValid() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("osnet: no source address for %s", remote)
}
