// Package osnet sets up the host's routing for the userspace data plane:
// routes that send protected (and discarded) destinations into the TUN device,
// kept in their own routing table, and the policy rule that consults that table
// only for packets without the daemon's firewall mark. The daemon's own
// sockets carry the mark, so its encrypted packets take the main table and
// never loop back into the TUN (the scheme wg-quick uses). A Filter keeps an
// nftables table that drops cleartext where a PROTECT or DISCARD policy
// applies.
//
// Fail closed. Once a policy is loaded, these kernel objects enforce it
// whether or not the daemon runs (starting, reloading, stopped, crashed):
//
//   - the rules "not fwmark MARK lookup TABLE" (IPv4 and IPv6), which stay
//     until Router.Clear or Cleanup;
//   - in TABLE, for every protected or discarded destination, a route into
//     the TUN device (metric TUNMetric) and a prohibit route (metric
//     HoldMetric) that needs no device: when the TUN device disappears with
//     the daemon, the prohibit route refuses the traffic instead of letting
//     it fall through to the main table;
//   - the nftables table "inet goipsec" (see Filter): chains input, output
//     and forward drop cleartext that matches a PROTECT or DISCARD rule and
//     neither comes from nor goes into the TUN device; the daemon's own
//     packets carry the mark. A new Filter adopts the table it finds, and
//     Set replaces it in one transaction, never through an open state.
//
// Router.Close and Filter.Close keep these objects; Clear (and the
// package-level Cleanup and DeleteFilter, for a daemon that is gone) remove
// them.
//
// Only cmd/ipsecd and tests use it: engines get their OS resources injected.
package osnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route is one destination routed into the TUN device.
type Route struct {
	Dst netip.Prefix
	Src netip.Addr // preferred source address; zero: the kernel picks
}

// Metrics of the two routes that a Router installs for each destination.
// The route into the TUN device has the lower metric, so it wins while the
// device exists; the prohibit route depends on no device and takes over when
// the TUN device disappears (the daemon stopped, crashed or was killed).
const (
	TUNMetric  = 100
	HoldMetric = 4000
)

// Router manages the routes of one TUN device in one table. Safe for
// concurrent use.
//
// For every destination it installs two routes in the table: one into the
// TUN device (metric TUNMetric) and one of type prohibit (metric HoldMetric)
// that holds the destination when the device is gone. Together with the
// rule "not fwmark MARK lookup TABLE", which outlives the daemon, a packet
// for a protected or discarded destination is then refused by the kernel
// instead of falling through to the main table and leaving in the clear.
// This is what kernel IPsec does when the IKE daemon dies: the XFRM policy
// stays (RFC 4301, Section 4.4.1: the SPD is consulted for every packet,
// whether or not a key exchange service runs).
type Router struct {
	link  netlink.Link
	table int
	mark  uint32
	prio  int

	mu sync.Mutex
}

// New brings the TUN device up and installs, for IPv4 and IPv6, the rule
// "not fwmark MARK lookup TABLE" at priority prio, keeping the rule (and the
// routes in the table) that an earlier run left behind: a restarted daemon
// takes over what it finds, and until its first Set the routes of the
// earlier run hold. It also turns off reverse path filtering on the TUN
// device so that decapsulated packets are accepted.
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
	if err := addRules(table, mark, prio); err != nil {
		return nil, err
	}
	// Best effort: a missing sysctl only matters with strict rp_filter.
	os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/rp_filter", []byte("0"), 0)
	return r, nil
}

// policyRule is the rule "not fwmark mark lookup table" at priority prio.
func policyRule(family, table int, mark uint32, prio int) *netlink.Rule {
	rule := netlink.NewRule()
	rule.Family = family
	rule.Table = table
	rule.Mark = mark
	rule.Invert = true
	rule.Priority = prio
	return rule
}

// addRules adds policyRule for IPv4 and IPv6, keeping a rule that is
// already there: the kernel refuses a second identical rule with EEXIST
// (NLM_F_EXCL), and the rule of an earlier run is adopted as is.
func addRules(table int, mark uint32, prio int) error {
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if err := netlink.RuleAdd(policyRule(fam, table, mark, prio)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("osnet: adding rule not fwmark %#x lookup %d: %w", mark, table, err)
		}
	}
	return nil
}

// Hold installs the part of a Router's state that needs no TUN device: the
// rules of New and, in table, the prohibit route of every destination in
// dsts. Traffic to them is refused, never sent, until a Router for the
// same table, mark and priority takes over: New adopts the rules, and its
// first Set adds the routes into the TUN device in front of the prohibit
// routes (which stay) before it deletes what it does not want. Hold adds
// and replaces, and deletes nothing. This is ipsecd's fail-closed boot
// mode, run before the network is up.
func Hold(table int, mark uint32, prio int, dsts []netip.Prefix) error {
	if err := addRules(table, mark, prio); err != nil {
		return err
	}
	var errs []error
	for _, dst := range dsts {
		if err := netlink.RouteReplace(holdRoute(table, dst)); err != nil {
			errs = append(errs, fmt.Errorf("osnet: route prohibit %s table %d: %w", dst, table, err))
		}
	}
	return errors.Join(errs...)
}

// Set makes routes the destinations of the table: for each, the route into
// the TUN device and the prohibit route behind it. New routes are added
// before old ones are deleted, and every other route in the table (those of
// an earlier run included) is deleted last, so no destination that stays is
// ever without a route.
func (r *Router) Set(routes []Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	want := make(map[routeKey]bool)
	for _, rt := range routes {
		for _, nr := range []*netlink.Route{holdRoute(r.table, rt.Dst), r.tunRoute(rt)} {
			// Wanted even if the replace fails: a route already there
			// stays rather than being swept below.
			want[keyOf(nr)] = true
			if err := netlink.RouteReplace(nr); err != nil {
				errs = append(errs, fmt.Errorf("osnet: route %s %s table %d: %w", routeType(nr), rt.Dst, r.table, err))
			}
		}
	}
	cur, err := tableRoutes(r.table)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, nr := range cur {
		if want[keyOf(&nr)] {
			continue
		}
		if err := netlink.RouteDel(&nr); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("osnet: deleting route %s table %d: %w", nr.Dst, r.table, err))
		}
	}
	return errors.Join(errs...)
}

// routeKey identifies a route of the table: its destination, type, metric
// and, for a route into a device, the device.
type routeKey struct {
	dst   netip.Prefix
	typ   int
	prio  int
	index int
}

func keyOf(nr *netlink.Route) routeKey {
	k := routeKey{dst: dstPrefix(nr), typ: nr.Type, prio: nr.Priority}
	if k.typ == 0 {
		k.typ = unix.RTN_UNICAST
	}
	if k.typ == unix.RTN_UNICAST {
		k.index = nr.LinkIndex
	}
	return k
}

// dstPrefix returns a route's destination; the kernel reports a default
// route without one.
func dstPrefix(nr *netlink.Route) netip.Prefix {
	if nr.Dst == nil {
		if nr.Family == unix.AF_INET6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(nr.Dst.IP)
	bits, _ := nr.Dst.Mask.Size()
	if bits <= 32 && len(nr.Dst.Mask) == 4 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, bits).Masked()
}

func routeType(nr *netlink.Route) string {
	if nr.Type == unix.RTN_PROHIBIT {
		return "prohibit"
	}
	return "dev"
}

func ipNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// tunRoute is the route of rt into the TUN device.
func (r *Router) tunRoute(rt Route) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: r.link.Attrs().Index,
		Dst:       ipNet(rt.Dst),
		Family:    family(rt.Dst),
		Table:     r.table,
		Scope:     netlink.SCOPE_LINK,
		Priority:  TUNMetric,
		Type:      unix.RTN_UNICAST,
	}
	if rt.Src.IsValid() {
		nr.Src = rt.Src.AsSlice()
	}
	return nr
}

// holdRoute is the prohibit route of dst in table, which needs no device:
// packets that take it are refused (EACCES to a local sender, ICMP
// administratively prohibited to a forwarded packet's source), never sent.
func holdRoute(table int, dst netip.Prefix) *netlink.Route {
	return &netlink.Route{
		Dst:      ipNet(dst),
		Family:   family(dst),
		Table:    table,
		Priority: HoldMetric,
		Type:     unix.RTN_PROHIBIT,
	}
}

// tableRoutes lists the IPv4 and IPv6 routes of table.
func tableRoutes(table int) ([]netlink.Route, error) {
	var out []netlink.Route
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rs, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("osnet: listing routes of table %d: %w", table, err)
		}
		for _, nr := range rs {
			if nr.Family == 0 {
				nr.Family = fam
			}
			out = append(out, nr)
		}
	}
	return out, nil
}

// Close releases the Router and keeps the policy in force: the rule and
// the prohibit routes stay, and the routes into the TUN device go with the
// device. Clear removes them too.
func (r *Router) Close() error { return nil }

// Clear removes the rule and every route of the table: protected
// destinations follow the main table again.
func (r *Router) Clear() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Cleanup(r.table, r.prio)
}

// Cleanup removes what a Router for table left behind, whether or not its
// process still runs: the policy routing rules that look up table (at
// priority prio) and every route of table, for IPv4 and IPv6. What is not
// there is not an error.
func Cleanup(table, prio int) error {
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := netlink.RuleList(fam)
		if err != nil {
			errs = append(errs, fmt.Errorf("osnet: listing rules: %w", err))
			continue
		}
		for _, rule := range rules {
			if rule.Table != table || rule.Priority != prio {
				continue
			}
			if err := netlink.RuleDel(&rule); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("osnet: deleting rule lookup %d: %w", table, err))
			}
		}
	}
	routes, err := tableRoutes(table)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, nr := range routes {
		if err := netlink.RouteDel(&nr); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("osnet: deleting route %s table %d: %w", dstPrefix(&nr), table, err))
		}
	}
	return errors.Join(errs...)
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
