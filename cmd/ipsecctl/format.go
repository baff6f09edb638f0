package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
)

// humanBytes writes a byte count in IEC units, as `wg show` does:
// "512 B", "1.21 KiB", "3.40 MiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / unit
	i := 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.2f %s", v, units[i])
}

// humanDuration writes a duration to the second without trailing zero
// units: "3h12m7s", "4h", "2m", "0s".
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	s := d.Truncate(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ago writes how long before now t was; "-" if t is zero.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return humanDuration(now.Sub(t)) + " ago"
}

// in writes how long after now t is; "-" if t is zero.
func in(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if t.Before(now) {
		return "overdue by " + humanDuration(now.Sub(t))
	}
	return "in " + humanDuration(t.Sub(now))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// selectors writes a list of traffic selectors; an empty list matches any.
func selectors(ts []string) string {
	if len(ts) == 0 {
		return "any"
	}
	return strings.Join(ts, ",")
}

// counts writes drop counters as "bad_icv 3, replay 1", by reason name.
func counts(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func newTable(out io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
}

// printStatus writes the daemon's status and a table of each kind of SA.
func printStatus(out io.Writer, st ctlapi.Status, sas ctlapi.SAs, socket string, now time.Time) {
	c := st.Counters
	t := newTable(out)
	fmt.Fprintf(t, "daemon:\tipsecd %s, pid %d, up %s, API %s\n", orDash(st.Version), st.PID,
		humanDuration(time.Duration(st.UptimeSeconds)*time.Second), orDash(st.API))
	fmt.Fprintf(t, "config:\t%s\n", orDash(st.ConfigFile))
	fmt.Fprintf(t, "socket:\t%s\n", socket)
	fmt.Fprintf(t, "SAs:\t%d IKE, %d CHILD\n", st.IKESAs, st.ChildSAs)
	fmt.Fprintf(t, "traffic:\tin %s (%d packets), out %s (%d packets)\n",
		humanBytes(c.BytesIn), c.PacketsIn, humanBytes(c.BytesOut), c.PacketsOut)
	fmt.Fprintf(t, "drops:\t%s\n", counts(c.Drops))
	fmt.Fprintf(t, "panics:\t%d IKE, %d data plane\n", st.Panics.IKE, st.Panics.Dataplane)
	if len(st.Pending) > 0 {
		fmt.Fprintf(t, "pending:\t%s\n", strings.Join(st.Pending, "; "))
	}
	for _, p := range st.PolicySources {
		printPolicySource(t, p, now)
	}
	t.Flush()

	if len(sas.IKESAs) > 0 {
		fmt.Fprintln(out)
		t = newTable(out)
		fmt.Fprintln(t, "IKE SA\tID\tSTATE\tLOCAL\tREMOTE\tREMOTE ID\tESTABLISHED")
		for _, s := range sas.IKESAs {
			fmt.Fprintf(t, "%s\t#%d\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.ID, s.State,
				s.LocalAddr, s.RemoteAddr, orDash(s.RemoteID), ago(s.Established, now))
		}
		t.Flush()
	}
	if len(sas.ChildSAs) > 0 {
		fmt.Fprintln(out)
		t = newTable(out)
		fmt.Fprintln(t, "CHILD SA\tSTATE\tPROTO\tMODE\tSPI IN\tSPI OUT\tBYTES IN\tBYTES OUT")
		for _, s := range sas.ChildSAs {
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.State, s.Protocol, s.Mode,
				s.SPIIn, s.SPIOut, humanBytes(s.BytesIn), humanBytes(s.BytesOut))
		}
		t.Flush()
	}
}

// printPolicySource writes the state of a shared policy source (etcd).
func printPolicySource(t io.Writer, p ctlapi.PolicySource, now time.Time) {
	state := "connected"
	if !p.Connected {
		state = "not connected"
	}
	from := ""
	if p.FromCache {
		from = ", from the cache"
	}
	fmt.Fprintf(t, "policy source:\t%s %s%s (%s), %s\n", p.Kind, p.Prefix, from, strings.Join(p.Endpoints, ","), state)
	fmt.Fprintf(t, "  in force:\trevision %d, applied %s, %d documents%s; %d updates, %d refused\n",
		p.Revision, ago(p.Applied, now), len(p.Documents), docList(p.Documents), p.Updates, p.Refused)
	if p.LastError != "" {
		fmt.Fprintf(t, "  last error:\t%s: %s\n", ago(p.LastErrorTime, now), strings.ReplaceAll(p.LastError, "\n", "; "))
	}
}

// docList lists a few document keys in parentheses.
func docList(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	if len(keys) > 4 {
		return " (" + strings.Join(keys[:4], ", ") + ", ...)"
	}
	return " (" + strings.Join(keys, ", ") + ")"
}

// printSAs writes each IKE SA with its CHILD SAs, then manual SAs, in the
// manner of `swanctl --list-sas`.
func printSAs(out io.Writer, sas ctlapi.SAs, now time.Time) {
	if len(sas.IKESAs) == 0 && len(sas.ChildSAs) == 0 {
		fmt.Fprintln(out, "no SAs")
		return
	}
	shown := make([]bool, len(sas.ChildSAs))
	for _, ike := range sas.IKESAs {
		role := "responder"
		if ike.Initiator {
			role = "initiator"
		}
		fmt.Fprintf(out, "%s #%d: %s, IKEv%d, %s, SPIs %s_i %s_r\n",
			ike.Name, ike.ID, ike.State, ike.Version, role, ike.SPIi, ike.SPIr)
		fmt.Fprintf(out, "  local  %s @ %s\n", orDash(ike.LocalID), ike.LocalAddr)
		fmt.Fprintf(out, "  remote %s @ %s\n", orDash(ike.RemoteID), ike.RemoteAddr)
		encap := ""
		if ike.Encap {
			encap = ", UDP encapsulation"
		}
		fmt.Fprintf(out, "  proposal %s%s\n", orDash(ike.Proposal), encap)
		if !ike.Established.IsZero() {
			line := "  established " + ago(ike.Established, now)
			if !ike.RekeyAt.IsZero() {
				line += ", rekeying " + in(ike.RekeyAt, now)
			}
			fmt.Fprintln(out, line)
		}
		for i, child := range sas.ChildSAs {
			if !child.Manual && child.IKESA == ike.ID {
				shown[i] = true
				printChild(out, child, "  ", now)
			}
		}
	}
	var manual, orphans []ctlapi.ChildSA
	for i, child := range sas.ChildSAs {
		switch {
		case shown[i]:
		case child.Manual:
			manual = append(manual, child)
		default:
			orphans = append(orphans, child)
		}
	}
	if len(orphans) > 0 {
		fmt.Fprintln(out, "CHILD SAs of no listed IKE SA:")
		for _, child := range orphans {
			printChild(out, child, "  ", now)
		}
	}
	if len(manual) > 0 {
		fmt.Fprintln(out, "manual SAs:")
		for _, child := range manual {
			printChild(out, child, "  ", now)
		}
	}
}

// printChild writes one CHILD SA block.
func printChild(out io.Writer, s ctlapi.ChildSA, indent string, now time.Time) {
	mode := s.Mode
	if s.Encap == "udp" {
		mode += " in UDP"
	}
	esn := ""
	if s.ESN {
		esn = ", ESN"
	}
	fmt.Fprintf(out, "%s%s: %s, %s %s, %s%s%s\n", indent, s.Name, s.State,
		strings.ToUpper(s.Protocol), mode, orDash(s.Algorithm), esn, keText(s))
	fmt.Fprintf(out, "%s  %s -> %s\n", indent, s.LocalAddr, s.RemoteAddr)
	life := indent + "  installed " + ago(s.Installed, now)
	if !s.Lifetime.RekeyAt.IsZero() {
		life += ", rekeying " + in(s.Lifetime.RekeyAt, now)
	}
	if !s.Lifetime.ExpireAt.IsZero() {
		life += ", expires " + in(s.Lifetime.ExpireAt, now)
	}
	fmt.Fprintln(out, life)
	t := newTable(out)
	fmt.Fprintf(t, "%s  in\t%s\t%s\t%d packets\treplay drops %d, ICV failures %d\n", indent,
		s.SPIIn, humanBytes(s.BytesIn), s.PacketsIn, s.ReplayDrops, s.ICVFailures)
	fmt.Fprintf(t, "%s  out\t%s\t%s\t%d packets\n", indent, s.SPIOut, humanBytes(s.BytesOut), s.PacketsOut)
	fmt.Fprintf(t, "%s  local\t%s\n", indent, selectors(s.LocalTS))
	fmt.Fprintf(t, "%s  remote\t%s\n", indent, selectors(s.RemoteTS))
	t.Flush()
}

// keText returns ", KE " and the CHILD SA's key exchanges joined by "+"
// ("x25519+mlkem768" for a hybrid SA, RFC 9370), or "" without PFS.
// Daemons that predate the KEs list send only KE.
func keText(s ctlapi.ChildSA) string {
	switch {
	case len(s.KEs) > 0:
		return ", KE " + strings.Join(s.KEs, "+")
	case s.KE != "":
		return ", KE " + s.KE
	}
	return ""
}

// printPolicies writes the SPD as a table, first rule first.
func printPolicies(out io.Writer, p ctlapi.Policies) {
	if len(p.Policies) == 0 {
		fmt.Fprintln(out, "no policies")
		return
	}
	t := newTable(out)
	fmt.Fprintln(t, "#\tNAME\tDIR\tACTION\tLOCAL TS\tREMOTE TS\tSA\tHITS")
	for _, r := range p.Policies {
		dir := r.Direction
		if dir == "" {
			dir = "both"
		}
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.Index, r.Name, dir, r.Action,
			selectors(r.LocalTS), selectors(r.RemoteTS), orDash(r.SA), r.Hits)
	}
	t.Flush()
}

// packet writes an explain request as "10.1.0.5 -> 10.2.0.53 udp dport 53 (out)".
func packet(r ctlapi.ExplainRequest) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s %s", r.Src, r.Dst, protoName(r.Proto))
	if r.SPort != 0 {
		fmt.Fprintf(&b, " sport %d", r.SPort)
	}
	if r.DPort != 0 {
		if r.Proto == 1 || r.Proto == 58 {
			fmt.Fprintf(&b, " type %d code %d", r.DPort>>8, r.DPort&0xff)
		} else {
			fmt.Fprintf(&b, " dport %d", r.DPort)
		}
	}
	if r.Direction != "" {
		fmt.Fprintf(&b, " (%s)", r.Direction)
	}
	return b.String()
}

// printExplain writes the rules tried and the verdict.
func printExplain(out io.Writer, res ctlapi.ExplainResult) {
	fmt.Fprintf(out, "packet: %s\n", packet(res.Request))
	if len(res.Steps) > 0 {
		t := newTable(out)
		fmt.Fprintln(t, "#\tRULE\tRESULT\tREASON")
		for _, s := range res.Steps {
			result := "no match"
			if s.Matched {
				result = "match"
			}
			fmt.Fprintf(t, "%d\t%s\t%s\t%s\n", s.Index, s.Name, result, s.Reason)
		}
		t.Flush()
	}
	verdict := res.Action
	switch {
	case res.Matched && res.Rule != nil:
		verdict += fmt.Sprintf(" by rule %d (%s)", res.Rule.Index, res.Rule.Name)
		if res.Rule.SA != "" {
			verdict += " with SA " + res.Rule.SA
		}
	case !res.Matched:
		verdict += ": no rule matched"
	}
	if res.Reason != "" {
		verdict += "; " + res.Reason
	}
	fmt.Fprintf(out, "verdict: %s\n", verdict)
	if res.Group != "" {
		line := fmt.Sprintf("group: %s (prefix %s)", res.Group, res.GroupPrefix)
		switch f := res.Fallback; {
		case f == nil:
		case f.Active:
			line += "; fallback to the clear in force until " + f.Until.UTC().Format(time.RFC3339)
		case f.Negotiating:
			line += "; negotiating, falls back to the clear at " + f.Until.UTC().Format(time.RFC3339) + " without an SA"
		default:
			line += "; no fallback in force"
		}
		fmt.Fprintln(out, line)
	}
}

// printPeers writes the on-demand peers as a table.
func printPeers(out io.Writer, p ctlapi.Peers, now time.Time) {
	if len(p.Peers) == 0 {
		fmt.Fprintln(out, "no on-demand peers")
		return
	}
	t := newTable(out)
	fmt.Fprintln(t, "PEER\tCONNECTION\tGROUP\tSTATE\tREMOTE ID\tCHILDREN\tSINCE\tUNTIL")
	for _, x := range p.Peers {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", x.Addr, x.Connection, orDash(x.Group), x.State,
			orDash(x.RemoteID), x.Children, ago(x.Since, now), in(x.Until, now))
	}
	t.Flush()
}

// printEvent writes an event as "TIME TYPE key=value ...", keys sorted.
func printEvent(out io.Writer, ev ctlapi.Event) error {
	var b strings.Builder
	b.WriteString(ev.Time.Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteByte(' ')
	b.WriteString(ev.Type)
	for _, k := range slices.Sorted(maps.Keys(ev.Fields)) {
		v := ev.Fields[k]
		if v == "" || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f }) {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	b.WriteByte('\n')
	_, err := io.WriteString(out, b.String())
	return err
}
