// Package interop holds goipsec's cross-implementation tests: packets sealed
// by another IPsec implementation must open in goipsec, and packets sealed by
// goipsec must open in the other implementation, for every transform and
// mode they both support.
//
// The package has no API. scapy_test.go drives scapy (scapy_oracle.py, run as
// /usr/bin/python3) against packages esp and ah; see its file comment for the
// algorithm mapping and the combinations that scapy cannot cover.
package interop
