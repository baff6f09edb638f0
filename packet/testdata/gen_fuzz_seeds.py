#!/usr/bin/env python3
# Writes the seed corpus of FuzzDecode and FuzzTransportSplit. The checksums are
# computed here, in Python, independently of the Go code, so that the tests can
# also use the TCP, UDP and ICMPv6 seeds as checksum known answers.
# Run from anywhere: python3 packet/testdata/gen_fuzz_seeds.py
import struct, os, json
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b))
    while s>>16: s=(s&0xffff)+(s>>16)
    return (~s)&0xffff
def a4(s): return bytes(int(x) for x in s.split('.'))
import ipaddress
def a6(s): return ipaddress.IPv6Address(s).packed
def v4(proto, payload, src='192.0.2.1', dst='198.51.100.2', opts=b'', flags=0, off=0, ident=0x1234):
    ihl=5+len(opts)//4
    h=struct.pack('!BBHHHBBH4s4s',0x40|ihl,0,20+len(opts)+len(payload),ident,(flags<<13)|off,64,proto,0,a4(src),a4(dst))+opts
    h=h[:10]+struct.pack('!H',csum(h))+h[12:]
    return h+payload
def l4sum(src,dst,proto,l4,v6=False):
    if v6: ph=src+dst+struct.pack('!I3xB',len(l4),proto)
    else: ph=src+dst+struct.pack('!xBH',proto,len(l4))
    return csum(ph+l4)
def udp(sp,dp,data,src,dst,v6=False):
    u=struct.pack('!HHHH',sp,dp,8+len(data),0)+data
    c=l4sum(src,dst,17,u,v6) or 0xffff
    return u[:6]+struct.pack('!H',c)+u[8:]
def tcp(sp,dp,src,dst,v6=False):
    t=struct.pack('!HHIIBBHHH',sp,dp,1,0,5<<4,0x02,65535,0,0)
    c=l4sum(src,dst,6,t,v6)
    return t[:16]+struct.pack('!H',c)+t[18:]
def v6(nh, payload, src='2001:db8::1', dst='2001:db8::2'):
    return struct.pack('!IHBB',6<<28,len(payload),nh,64)+a6(src)+a6(dst)+payload
def ext(nh, n8=0):  # generic ext header of (n8+1)*8 bytes
    body=bytes([nh,n8])+bytes(6+8*n8)
    return body
def frag(nh, off, m):
    return struct.pack('!BBHI',nh,0,(off<<3)|m,0xabcd)
S4,D4=a4('192.0.2.1'),a4('198.51.100.2')
S6,D6=a6('2001:db8::1'),a6('2001:db8::2')
here=os.path.dirname(os.path.abspath(__file__))
ref=json.load(open(os.path.join(here,'..','..','testdata','esp','scapy-linux-reference.json')))
icmp4=bytes.fromhex(ref['packets'][0]['decrypted']['inner_packet_hex'])
icmp6=struct.pack('!BBHHH',128,0,0,1,1)+b'ping'
icmp6=icmp6[:2]+struct.pack('!H',l4sum(S6,D6,58,icmp6,True))+icmp6[4:]
u6=udp(500,4500,b'hello',S6,D6,True)
seeds={
 'ipv4-icmp-scapy': icmp4,
 'ipv4-udp': v4(17, udp(4500,4500,b'\xff',S4,D4)),
 'ipv4-tcp': v4(6, tcp(12345,443,S4,D4)),
 'ipv4-tcp-options': v4(6, tcp(1,2,S4,D4), opts=b'\x01\x01\x01\x00'),
 'ipv4-udp-first-fragment': v4(17, udp(53,53,b'x'*16,S4,D4), flags=1),
 'ipv4-nonfirst-fragment': v4(17, b'y'*16, flags=0, off=3),
 'ipv4-esp': v4(50, bytes.fromhex('0000100100000001')+b'z'*24),
 'ipv4-trailing': v4(17, udp(1,2,b'',S4,D4))+b'\0'*6,
 'ipv4-truncated': v4(6, tcp(1,2,S4,D4))[:30],
 'ipv4-short-tcp': v4(6, b'\0'*10),
 'ipv6-tcp': v6(6, tcp(1234,80,S6,D6,True)),
 'ipv6-udp': v6(17, u6),
 'ipv6-icmpv6': v6(58, icmp6),
 'ipv6-ext-chain': v6(0, ext(60)+ext(43)+ext(44,1)+frag(60,0,0)+ext(17)+u6),
 'ipv6-dstopts-udp': v6(60, ext(17)+u6),
 'ipv6-nonfirst-fragment': v6(44, frag(17,100,1)+b'q'*24),
 'ipv6-esp': v6(50, bytes.fromhex('0000100100000001')+b'z'*24),
 'ipv6-nonext': v6(59, b''),
 'ipv6-truncated-ext': v6(43, ext(17,3))[:60],
 'ipv6-short-payload': v6(17, u6)[:45],
}
for name,b in seeds.items():
    lit=''.join('\\x%02x'%c for c in b)
    for fz in ('FuzzDecode','FuzzTransportSplit'):
        open(os.path.join(here,'fuzz',fz,name),'w').write('go test fuzz v1\n[]byte("%s")\n'%lit)
print(len(seeds))
