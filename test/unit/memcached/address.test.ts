import t from 'tap'
import { AddressAllowList, parseAddress, type Address } from '../../../src/memcached/address.js'

/** Parses an address the test knows to be valid. */
function address (text: string): Address {
  const parsed = parseAddress(text)
  if (parsed === undefined) throw new Error(`test setup: ${text} does not parse`)
  return parsed
}

t.test('parseAddress: hostnames, lower-cased', async (t) => {
  t.same(parseAddress('localhost:11211'), { host: 'localhost', port: 11211, family: 0, text: 'localhost:11211' })
  t.same(parseAddress('mc-1.Cache.Internal:11211'), { host: 'mc-1.cache.internal', port: 11211, family: 0, text: 'mc-1.cache.internal:11211' })
  t.same(parseAddress('a1:1'), { host: 'a1', port: 1, family: 0, text: 'a1:1' })
})

t.test('parseAddress: IPv4 literals', async (t) => {
  t.same(parseAddress('10.0.0.5:11211'), { host: '10.0.0.5', port: 11211, family: 4, text: '10.0.0.5:11211' })
  t.same(parseAddress('127.0.0.1:65535'), { host: '127.0.0.1', port: 65535, family: 4, text: '127.0.0.1:65535' })
})

t.test('parseAddress: IPv6 literals in brackets', async (t) => {
  t.same(parseAddress('[::1]:11211'), { host: '::1', port: 11211, family: 6, text: '[::1]:11211' })
  t.same(parseAddress('[fd00::5]:11211'), { host: 'fd00::5', port: 11211, family: 6, text: '[fd00::5]:11211' })
})

t.test('parseAddress: IPv6 text is canonical (RFC 5952: lower case, zeros compressed)', async (t) => {
  t.equal(parseAddress('[FD00::5]:11211')?.text, '[fd00::5]:11211')
  t.equal(parseAddress('[0:0:0:0:0:0:0:1]:11211')?.text, '[::1]:11211')
  t.equal(parseAddress('[fd00:0:0:0:0:0:0:5]:11211')?.text, '[fd00::5]:11211')
})

t.test('parseAddress: the port is written without leading zeros', async (t) => {
  t.equal(parseAddress('10.0.0.5:0080')?.text, '10.0.0.5:80')
})

t.test('parseAddress: a port is required', async (t) => {
  for (const text of ['cache.internal', 'cache.internal:', '10.0.0.5', '[::1]', '[::1]:', ':11211', '']) {
    t.equal(parseAddress(text), undefined, JSON.stringify(text))
  }
})

t.test('parseAddress: ports 1 to 65535 only', async (t) => {
  for (const text of ['a:0', 'a:65536', 'a:99999', 'a:123456', 'a:-1', 'a:+1', 'a:1.5', 'a: 1', 'a:0x10']) {
    t.equal(parseAddress(text), undefined, JSON.stringify(text))
  }
  t.equal(parseAddress('a:1')?.port, 1)
  t.equal(parseAddress('a:65535')?.port, 65535)
})

t.test('parseAddress: characters outside hostnames are refused, "~" above all', async (t) => {
  for (const text of ['a~b:1', 'a:1~', '~:1', 'a b:1', 'a_b:1', 'a;b:1', 'a/b:1', 'a@b:1', 'ä.example:1', '-a:1', 'a-:1', 'a..b:1', '.a:1', 'a.:1', `${'a'.repeat(64)}:1`]) {
    t.equal(parseAddress(text), undefined, JSON.stringify(text))
  }
  t.equal(parseAddress(`${'a'.repeat(63)}:1`)?.host, 'a'.repeat(63), 'a 63-character label is fine')
})

t.test('parseAddress: a name longer than 253 characters is refused', async (t) => {
  const name = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`
  t.equal(name.length, 253)
  t.equal(parseAddress(`${name}:1`)?.host, name)
  t.equal(parseAddress(`${name}d:1`), undefined)
})

t.test('parseAddress: malformed IP literals are refused', async (t) => {
  for (const text of ['fd00::5:11211', '[fd00::5', '[fd00::5]11211', '[fd00::5]x:1', '[1.2.3.4]:1', '[not-v6]:1', '[::1]:1:2']) {
    t.equal(parseAddress(text), undefined, JSON.stringify(text))
  }
})

t.test('parseAddress: names in dotted-number form that are not IPv4 literals are refused (RFC 1123 2.1)', async (t) => {
  // A resolver reads these as IPv4 (010 is octal 8, 1.2.3 is 1.2.0.3): they are not host names.
  for (const text of ['010.0.0.1:11211', '1.2.3:11211', '999.1.1.1:11211', '10.0.0.1.5:11211']) {
    t.equal(parseAddress(text), undefined, JSON.stringify(text))
  }
})

t.test('AddressAllowList: an empty list allows every address', async (t) => {
  const all = new AddressAllowList([])
  for (const text of ['10.0.0.5:1', '[fd00::5]:1', 'anything.example.com:1']) t.ok(all.allows(address(text)), text)
})

t.test('AddressAllowList: IPv4 CIDRs', async (t) => {
  const list = new AddressAllowList(['10.0.0.0/8', '192.168.1.0/24'])
  t.ok(list.allows(address('10.0.0.1:1')))
  t.ok(list.allows(address('10.255.255.255:1')))
  t.ok(list.allows(address('192.168.1.200:1')))
  t.notOk(list.allows(address('11.0.0.1:1')))
  t.notOk(list.allows(address('192.168.2.1:1')))
  t.notOk(list.allows(address('[fd00::1]:1')), 'an IPv6 address is outside IPv4 rules')
})

t.test('AddressAllowList: IPv6 CIDRs', async (t) => {
  const list = new AddressAllowList(['fd00::/8'])
  t.ok(list.allows(address('[fd12:3456::1]:1')))
  t.notOk(list.allows(address('[fe80::1]:1')))
  t.notOk(list.allows(address('10.0.0.1:1')), 'an IPv4 address is outside IPv6 rules')
})

t.test('AddressAllowList: single IPs', async (t) => {
  const list = new AddressAllowList(['10.0.0.5', '::1'])
  t.ok(list.allows(address('10.0.0.5:11211')))
  t.notOk(list.allows(address('10.0.0.6:11211')))
  t.ok(list.allows(address('[::1]:11211')))
  t.notOk(list.allows(address('[::2]:11211')))
})

t.test('AddressAllowList: a glob\'s * matches one or more whole labels', async (t) => {
  const list = new AddressAllowList(['*.cache.internal'])
  t.ok(list.allows(address('a.cache.internal:11211')))
  t.ok(list.allows(address('a.b.cache.internal:11211')))
  t.ok(list.allows(address('MC-1.Cache.Internal:11211')), 'compared case-insensitively')
  t.notOk(list.allows(address('cache.internal:11211')), 'at least one label')
  t.notOk(list.allows(address('evilcache.internal:11211')), 'whole labels only')
  t.notOk(list.allows(address('a.cache.internal.evil.com:11211')), 'anchored at the end')
  t.notOk(list.allows(address('a.cache-internal:11211')), 'dots are literal')
})

t.test('AddressAllowList: a * ending a label matches any run of label characters, within that label', async (t) => {
  const list = new AddressAllowList(['memcached-*', 'mc*.cache.internal'])
  t.ok(list.allows(address('memcached-1:11211')))
  t.ok(list.allows(address('memcached-12:11211')))
  t.ok(list.allows(address('MEMCACHED-3:11211')), 'compared case-insensitively')
  t.notOk(list.allows(address('memcached-1.evil.com:11211')), 'never across a dot')
  t.notOk(list.allows(address('xmemcached-1:11211')), 'anchored at the start')
  t.ok(list.allows(address('mc7.cache.internal:11211')))
  t.notOk(list.allows(address('mc.7.cache.internal:11211')))
  t.equal(AddressAllowList.check('mem_*'), '"mem_*" is neither a CIDR nor a host glob (labels, or * for one or more labels)')
})

t.test('AddressAllowList: a * in the middle, and exact names', async (t) => {
  const list = new AddressAllowList(['mc.*.example.com', 'memcached.internal'])
  t.ok(list.allows(address('mc.eu.example.com:1')))
  t.ok(list.allows(address('mc.eu.west.example.com:1')))
  t.notOk(list.allows(address('mc.example.com:1')))
  t.ok(list.allows(address('memcached.internal:1')))
  t.notOk(list.allows(address('x.memcached.internal:1')), 'an exact name matches only itself')
})

t.test('AddressAllowList: hostnames never match CIDRs or IPs, IPs never match globs', async (t) => {
  const list = new AddressAllowList(['10.0.0.0/8', '10.0.0.5', '*'])
  t.ok(list.allows(address('anything:1')), '* alone matches every hostname')
  t.ok(list.allows(address('10.1.1.1:1')))
  t.notOk(list.allows(address('11.1.1.1:1')), 'an IP literal is not a hostname for *')
  const cidrOnly = new AddressAllowList(['10.0.0.0/8'])
  t.notOk(cidrOnly.allows(address('localhost:1')))
  t.notOk(cidrOnly.allows(address('mc.10.in-addr.example:1')))
})

t.test('AddressAllowList.check: undefined for valid rules', async (t) => {
  for (const rule of ['10.0.0.0/8', '10.0.0.5/32', '0.0.0.0/0', 'fd00::/8', '::/0', '10.0.0.5', '::1', '*.cache.internal', 'mc.*.example.com', '*', 'memcached.internal']) {
    t.equal(AddressAllowList.check(rule), undefined, rule)
  }
})

t.test('AddressAllowList.check: a description of what is wrong', async (t) => {
  t.equal(AddressAllowList.check('10.0.0.0/33'), '"10.0.0.0/33" is not a CIDR (bad prefix length)')
  t.equal(AddressAllowList.check('fd00::/129'), '"fd00::/129" is not a CIDR (bad prefix length)')
  t.equal(AddressAllowList.check('10.0.0.0/'), '"10.0.0.0/" is not a CIDR (bad prefix length)')
  t.equal(AddressAllowList.check('10.0.0.0/8x'), '"10.0.0.0/8x" is not a CIDR (bad prefix length)')
  t.equal(AddressAllowList.check('10.0.0/8'), '"10.0.0/8" is not a CIDR (bad network address)')
  t.equal(AddressAllowList.check('cache.internal/8'), '"cache.internal/8" is not a CIDR (bad network address)')
  const glob = 'is neither a CIDR nor a host glob (labels, or * for one or more labels)'
  t.equal(AddressAllowList.check('bad_label.com'), `"bad_label.com" ${glob}`)
  t.equal(AddressAllowList.check('*x.cache.internal'), `"*x.cache.internal" ${glob}`)
  t.equal(AddressAllowList.check('**.x'), `"**.x" ${glob}`)
  t.equal(AddressAllowList.check('a..b'), `"a..b" ${glob}`)
  t.equal(AddressAllowList.check(''), `"" ${glob}`)
})

t.test('AddressAllowList: an invalid rule throws with the same description', async (t) => {
  t.throws(() => new AddressAllowList(['10.0.0.0/8', 'bad rule']),
    new TypeError('"bad rule" is neither a CIDR nor a host glob (labels, or * for one or more labels)'))
})
