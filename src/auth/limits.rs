//! Abuse limits as arithmetic over a time the caller passes: token buckets (publishes per
//! connection, connects per client) and the table of client addresses that every worker
//! shares (open connections and connect rate per client).
//!
//! Time is monotonic milliseconds from any fixed origin (the server's start, say); nothing
//! here reads a clock, so tests drive it by hand.
//!
//! **Clients.** An IPv4 address is one client. An IPv6 address counts as its /64
//! ([`IPV6_PREFIX_BITS`]): one subscriber line or host is normally given a whole /64 and
//! privacy addresses rotate inside it, so counting single addresses would let one client
//! pose as 2⁶⁴. The cost: hosts sharing one /64 (some hosting networks) share one limit.
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from a dual-stack socket) are IPv4 clients.
//!
//! **The table's memory is bounded.** A client's entry exists while it has an open
//! connection or its connect bucket is still refilling; it goes when it has neither (at
//! release, or at the next [`ClientTable::sweep`]). At most `max_clients` entries are kept
//! (split evenly over [`CLIENT_SHARDS`] shards). A new client finding its shard full first
//! sweeps it, then forgets the clients with no open connection (their connect-rate memory
//! is lost early, which only a client with many addresses gains from, and per-address rates
//! cannot stop that one anyway); only if every entry holds an open connection is the new
//! client refused ([`Refusal::TableFull`], 503). Sized at twice `--max-connections` or more,
//! that refusal needs a shard twice as loaded as the average.
//!
//! **Contention.** Each shard has its own mutex, picked by a keyed hash of the client (so
//! a client cannot choose its shard), and is held for a few map operations.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// IPv6 clients are grouped by this prefix length.
pub const IPV6_PREFIX_BITS: u32 = 64;
/// Shards of the client table: a power of two well above the worker count, so two workers
/// rarely want the same lock.
pub const CLIENT_SHARDS: usize = 16;

/// A bucket's capacity for one token, in its scaled time units (see [`Bucket`]).
const UNIT: u64 = 1000;

/// A refill rate and a burst: `per_sec` tokens each second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    per_sec: NonZeroU32,
    burst: NonZeroU32,
}

impl Rate {
    /// `None` when either is zero: "no limit" is an absent `Rate`, not a zero one.
    pub fn new(per_sec: u32, burst: u32) -> Option<Rate> {
        Some(Rate {
            per_sec: NonZeroU32::new(per_sec)?,
            burst: NonZeroU32::new(burst)?,
        })
    }

    pub fn per_sec(self) -> u32 {
        self.per_sec.get()
    }

    pub fn burst(self) -> u32 {
        self.burst.get()
    }
}

/// How long until the next token, for `429 Retry-After` or the `/ws` `rate_limited` error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryAfter {
    ms: u64,
}

impl RetryAfter {
    /// Milliseconds, at least 1.
    pub fn millis(self) -> u64 {
        self.ms
    }

    /// Whole seconds rounded up, at least 1: the `Retry-After` header has no finer unit.
    pub fn secs(self) -> u64 {
        self.ms.div_ceil(1000).max(1)
    }
}

/// A token bucket's state, refilled lazily when it is next asked: 8 bytes, no allocation.
/// The [`Rate`] is passed in (it is the same for every bucket of one kind).
///
/// Kept in the "virtual scheduling" form of the same bucket (GCRA): `tat` is when the bucket
/// would next be full, in units where one millisecond is `per_sec` units and one token is
/// `UNIT` (1000), so every rate is exact in integers (3 per second is 333⅓ ms apart, not 333).
/// A new bucket is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    tat: u64,
}

impl Bucket {
    /// Takes one token at `now_ms`, or says how long until one is there.
    pub fn try_take(&mut self, rate: Rate, now_ms: u64) -> Result<(), RetryAfter> {
        let now = scaled(rate, now_ms);
        let next = self.tat.max(now).saturating_add(UNIT);
        let limit = now.saturating_add(capacity(rate));
        if next > limit {
            let ms = (next - limit).div_ceil(u64::from(rate.per_sec()));
            return Err(RetryAfter { ms: ms.max(1) });
        }
        self.tat = next;
        Ok(())
    }

    /// Whole tokens available at `now_ms`.
    pub fn tokens(&self, rate: Rate, now_ms: u64) -> u32 {
        let now = scaled(rate, now_ms);
        let room = now.saturating_add(capacity(rate)) - self.tat.max(now);
        u32::try_from(room / UNIT).unwrap_or(u32::MAX)
    }

    /// Whether the bucket has refilled to its burst (forgetting it then loses nothing).
    pub fn is_full(&self, rate: Rate, now_ms: u64) -> bool {
        self.tat <= scaled(rate, now_ms)
    }
}

fn scaled(rate: Rate, now_ms: u64) -> u64 {
    now_ms.saturating_mul(u64::from(rate.per_sec()))
}

fn capacity(rate: Rate) -> u64 {
    u64::from(rate.burst()) * UNIT
}

/// A client as limits see it: an IPv4 address, or the /64 of an IPv6 address. Bytes rather
/// than a `u128` so that it packs into a connection's padding (alignment 1, 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey([u8; 16]);

impl ClientKey {
    /// IPv4 keys are `::ffff:a.b.c.d` (low 64 bits never zero); IPv6 keys have the low
    /// 64 bits cleared. The two never meet.
    pub fn of(ip: IpAddr) -> ClientKey {
        let v6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_ipv6_mapped(),
                None => Ipv6Addr::from(u128::from(v6) & (u128::MAX << (128 - IPV6_PREFIX_BITS))),
            },
        };
        ClientKey(v6.octets())
    }

    /// The key in 8 bytes, for a connection to carry: an IPv6 key is its /64 prefix, an IPv4
    /// key `0000:ffff:a.b.c.d` (the unassigned `0:ffff::/32`, which no IPv6 peer has).
    pub fn compact(self) -> u64 {
        let v6 = u128::from_be_bytes(self.0);
        match Ipv6Addr::from(self.0).to_ipv4_mapped() {
            Some(v4) => 0x0000_ffff_0000_0000 | u64::from(u32::from(v4)),
            None => (v6 >> 64) as u64,
        }
    }

    /// The key [`ClientKey::compact`] made.
    pub fn from_compact(c: u64) -> ClientKey {
        if c >> 32 == 0x0000_ffff {
            ClientKey::of(IpAddr::V4(std::net::Ipv4Addr::from(c as u32)))
        } else {
            ClientKey((u128::from(c) << 64).to_be_bytes())
        }
    }

    /// The IPv4 address, or the IPv6 network address of the /64.
    pub fn ip(self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.0);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip() {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{IPV6_PREFIX_BITS}"),
        }
    }
}

/// The limits the table enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Open connections per client (`--max-connections-per-ip`); `None`: no limit.
    pub max_connections: Option<NonZeroU32>,
    /// New connections per client; `None`: no limit.
    pub connect_rate: Option<Rate>,
    /// Clients tracked at once, all shards together (see the module doc).
    pub max_clients: usize,
}

/// Why a new connection is refused. The connection is closed after the status is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// At `max_connections` for this client.
    TooManyConnections,
    /// The client's connect bucket is empty.
    RateLimited(RetryAfter),
    /// Every tracked client holds a connection and this one's shard is full.
    TableFull,
}

impl Refusal {
    /// 429 for what the client did (with `Retry-After` when known), 503 for what the server
    /// cannot hold.
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::TooManyConnections | Refusal::RateLimited(_) => 429,
            Refusal::TableFull => 503,
        }
    }

    pub fn retry_after(self) -> Option<RetryAfter> {
        match self {
            Refusal::RateLimited(wait) => Some(wait),
            _ => None,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too many connections from this address",
            Refusal::RateLimited(_) => "connecting too fast from this address",
            Refusal::TableFull => "server tracking too many clients, retry later",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.http_status(), self.reason())
    }
}

impl std::error::Error for Refusal {}

#[derive(Debug, Default)]
struct Entry {
    open: u32,
    bucket: Bucket,
}

/// Open connections and connect buckets per client, shared by all workers.
#[derive(Debug)]
pub struct ClientTable {
    shards: Box<[Mutex<HashMap<ClientKey, Entry>>]>,
    /// Picks the shard; keyed per process so clients cannot aim at one.
    pick: RandomState,
    limits: ClientLimits,
    shard_cap: usize,
}

impl ClientTable {
    pub fn new(limits: ClientLimits) -> ClientTable {
        ClientTable::with_shards(limits, CLIENT_SHARDS)
    }

    fn with_shards(limits: ClientLimits, shards: usize) -> ClientTable {
        let shards = shards.max(1);
        ClientTable {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            pick: RandomState::new(),
            limits,
            shard_cap: limits.max_clients.div_ceil(shards).max(1),
        }
    }

    /// Admits a new connection from `ip` at `now_ms`, counting it; the returned key goes
    /// back to [`release`](Self::release) when the connection closes. A refusal counts
    /// nothing and takes no token.
    pub fn acquire(&self, ip: IpAddr, now_ms: u64) -> Result<ClientKey, Refusal> {
        let key = ClientKey::of(ip);
        let mut shard = self.shard(key);
        if !shard.contains_key(&key) && shard.len() >= self.shard_cap {
            self.make_room(&mut shard, now_ms);
            if shard.len() >= self.shard_cap {
                return Err(Refusal::TableFull);
            }
        }
        // A new entry has no connections and a full bucket, so it is never refused below
        // and never left behind empty.
        let entry = shard.entry(key).or_default();
        if let Some(max) = self.limits.max_connections {
            if entry.open >= max.get() {
                return Err(Refusal::TooManyConnections);
            }
        }
        if let Some(rate) = self.limits.connect_rate {
            entry
                .bucket
                .try_take(rate, now_ms)
                .map_err(Refusal::RateLimited)?;
        }
        entry.open = entry.open.saturating_add(1);
        Ok(key)
    }

    /// A connection admitted under `key` has closed.
    pub fn release(&self, key: ClientKey, now_ms: u64) {
        let mut shard = self.shard(key);
        if let Some(entry) = shard.get_mut(&key) {
            entry.open = entry.open.saturating_sub(1);
            if self.idle(entry, now_ms) {
                shard.remove(&key);
            }
        }
    }

    /// Open connections counted for `ip`'s client.
    pub fn open(&self, ip: IpAddr) -> u32 {
        let key = ClientKey::of(ip);
        self.shard(key).get(&key).map_or(0, |e| e.open)
    }

    /// Clients tracked now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets clients with no connection whose bucket has refilled, and gives back map
    /// memory after a flood. Returns how many were forgotten. Meant for a periodic timer
    /// (every second or so); each shard is locked on its own.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let before = shard.len();
            shard.retain(|_, e| !self.idle(e, now_ms));
            removed += before - shard.len();
            if shard.capacity() > 4 * shard.len().max(16) {
                shard.shrink_to_fit();
            }
        }
        removed
    }

    fn shard(&self, key: ClientKey) -> MutexGuard<'_, HashMap<ClientKey, Entry>> {
        // In bounds: taken modulo the shard count, which `with_shards` makes at least 1.
        let i = self.pick.hash_one(key) as usize % self.shards.len();
        lock(&self.shards[i])
    }

    fn idle(&self, entry: &Entry, now_ms: u64) -> bool {
        entry.open == 0
            && self
                .limits
                .connect_rate
                .is_none_or(|rate| entry.bucket.is_full(rate, now_ms))
    }

    /// A full shard: drop idle clients, then clients with no open connection.
    fn make_room(&self, shard: &mut HashMap<ClientKey, Entry>, now_ms: u64) {
        shard.retain(|_, e| !self.idle(e, now_ms));
        if shard.len() >= self.shard_cap {
            shard.retain(|_, e| e.open > 0);
        }
    }
}

/// A panic elsewhere while a shard was held leaves plain counters behind: still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_compact_key_is_the_same_key() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let ips: [IpAddr; 6] = [
            Ipv4Addr::new(203, 0, 113, 9).into(),
            Ipv4Addr::new(0, 0, 0, 0).into(),
            Ipv4Addr::new(255, 255, 255, 255).into(),
            "2001:db8:1:2:aaaa:bbbb:cccc:dddd"
                .parse::<Ipv6Addr>()
                .unwrap()
                .into(),
            Ipv6Addr::LOCALHOST.into(),
            "fe80::1".parse::<Ipv6Addr>().unwrap().into(),
        ];
        let mut seen = std::collections::HashSet::new();
        for ip in ips {
            let k = super::ClientKey::of(ip);
            assert_eq!(super::ClientKey::from_compact(k.compact()), k, "{ip}");
            assert!(seen.insert(k.compact()), "{ip} collides");
            assert_ne!(k.compact(), u64::MAX, "{ip}");
        }
    }

    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Barrier};
    use std::thread;

    fn rate(per_sec: u32, burst: u32) -> Rate {
        Rate::new(per_sec, burst).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn zero_is_no_rate() {
        assert_eq!(Rate::new(0, 5), None);
        assert_eq!(Rate::new(5, 0), None);
        assert_eq!(rate(5, 2).per_sec(), 5);
        assert_eq!(rate(5, 2).burst(), 2);
    }

    #[test]
    fn burst_then_one_token_per_interval() {
        let r = rate(1, 3);
        let mut b = Bucket::default();
        assert_eq!(b.tokens(r, 0), 3);
        for _ in 0..3 {
            assert_eq!(b.try_take(r, 0), Ok(()));
        }
        assert_eq!(b.try_take(r, 0), Err(RetryAfter { ms: 1000 }));
        assert_eq!(b.try_take(r, 400), Err(RetryAfter { ms: 600 }));
        assert_eq!(b.try_take(r, 999), Err(RetryAfter { ms: 1 }));
        assert_eq!(b.try_take(r, 1000), Ok(()));
        assert_eq!(b.try_take(r, 1000), Err(RetryAfter { ms: 1000 }));
        assert!(!b.is_full(r, 3999));
        assert!(b.is_full(r, 4000));
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let r = rate(10, 2);
        let mut b = Bucket::default();
        b.try_take(r, 0).unwrap();
        assert_eq!(b.tokens(r, 1_000_000), 2);
        assert!(b.try_take(r, 1_000_000).is_ok() && b.try_take(r, 1_000_000).is_ok());
        assert_eq!(b.try_take(r, 1_000_000), Err(RetryAfter { ms: 100 }));
    }

    /// 3 per second is 333⅓ ms apart: from a drained bucket the third token comes at
    /// 1000 ms, not 999 (333 ms steps) or 1002 (334 ms steps).
    #[test]
    fn rates_that_do_not_divide_a_second_are_exact() {
        let r = rate(3, 3);
        let mut b = Bucket::default();
        for _ in 0..3 {
            b.try_take(r, 0).unwrap();
        }
        assert_eq!(b.try_take(r, 333), Err(RetryAfter { ms: 1 }));
        assert_eq!(b.try_take(r, 334), Ok(()));
        assert_eq!(b.try_take(r, 666), Err(RetryAfter { ms: 1 }));
        assert_eq!(b.try_take(r, 667), Ok(()));
        assert_eq!(b.try_take(r, 999), Err(RetryAfter { ms: 1 }));
        assert_eq!(b.try_take(r, 1000), Ok(()));
    }

    /// Taking greedily every millisecond for 10 s gives exactly burst + rate × 10.
    #[test]
    fn long_run_count_is_exact() {
        for (per_sec, burst) in [(7, 5), (1, 1), (1000, 1), (3, 10), (250, 50)] {
            let r = rate(per_sec, burst);
            let mut b = Bucket::default();
            let taken = (0..=10_000u64)
                .filter(|&t| b.try_take(r, t).is_ok())
                .count() as u64;
            assert_eq!(
                taken,
                u64::from(burst + per_sec * 10),
                "{per_sec}/s, burst {burst}"
            );
        }
    }

    #[test]
    fn retry_after_every_wait_is_right() {
        let r = rate(4, 1);
        let mut b = Bucket::default();
        b.try_take(r, 100).unwrap();
        for t in 100..350 {
            let wait = b.try_take(r, t).unwrap_err();
            assert!(b.clone().try_take(r, t + wait.millis()).is_ok(), "at {t}");
            assert!(
                b.clone().try_take(r, t + wait.millis() - 1).is_err(),
                "at {t}"
            );
        }
    }

    #[test]
    fn retry_after_in_seconds_rounds_up() {
        for (ms, secs) in [(1, 1), (999, 1), (1000, 1), (1001, 2), (60_000, 60)] {
            assert_eq!(RetryAfter { ms }.secs(), secs, "{ms}");
        }
    }

    #[test]
    fn odd_clocks_do_not_panic() {
        let r = rate(u32::MAX, u32::MAX);
        let mut b = Bucket::default();
        assert!(b.try_take(r, u64::MAX).is_ok());
        assert!(
            b.try_take(r, 0).is_err(),
            "time going backwards: the bucket stays spent"
        );
        let r = rate(1, 1);
        let mut b = Bucket::default();
        b.try_take(r, 5000).unwrap();
        assert_eq!(b.try_take(r, 10), Err(RetryAfter { ms: 5990 }));
    }

    #[test]
    fn bucket_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Bucket>(), 8);
    }

    #[test]
    fn client_key_packs() {
        assert_eq!(std::mem::size_of::<ClientKey>(), 16);
        assert_eq!(std::mem::align_of::<ClientKey>(), 1);
    }

    #[test]
    fn client_keys() {
        let v4 = ClientKey::of(ip("192.0.2.7"));
        assert_eq!(
            v4,
            ClientKey::of(ip("::ffff:192.0.2.7")),
            "v4-mapped is IPv4"
        );
        assert_ne!(v4, ClientKey::of(ip("192.0.2.8")));
        assert_eq!(v4.ip(), ip("192.0.2.7"));
        assert_eq!(v4.to_string(), "192.0.2.7");

        let a = ClientKey::of(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(
            a,
            ClientKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            "same /64"
        );
        assert_ne!(a, ClientKey::of(ip("2001:db8:1:3::1")), "next /64");
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");

        // ::/64 holds the v6 loopback and the v4-mapped range's prefix; neither meets IPv4.
        let loopback6 = ClientKey::of(ip("::1"));
        assert_ne!(loopback6, ClientKey::of(ip("127.0.0.1")));
        assert_ne!(loopback6, ClientKey::of(ip("0.0.0.0")));
        assert_eq!(loopback6.ip(), ip("::"));
        assert_eq!(ClientKey::of(ip("::ffff:0.0.0.0")).ip(), ip("0.0.0.0"));
    }

    fn limits(
        max_connections: u32,
        connect_rate: Option<Rate>,
        max_clients: usize,
    ) -> ClientLimits {
        ClientLimits {
            max_connections: NonZeroU32::new(max_connections),
            connect_rate,
            max_clients,
        }
    }

    #[test]
    fn connections_per_client() {
        let t = ClientTable::new(limits(2, None, 1000));
        let a = ip("198.51.100.1");
        let k1 = t.acquire(a, 0).unwrap();
        let k2 = t.acquire(a, 0).unwrap();
        assert_eq!(t.acquire(a, 0), Err(Refusal::TooManyConnections));
        assert_eq!(t.open(a), 2);
        // Another address, and another address of the same /64.
        assert!(t.acquire(ip("198.51.100.2"), 0).is_ok());
        let b1 = t.acquire(ip("2001:db8::1"), 0).unwrap();
        let b2 = t.acquire(ip("2001:db8::2"), 0).unwrap();
        assert_eq!(
            t.acquire(ip("2001:db8::3"), 0),
            Err(Refusal::TooManyConnections)
        );
        t.release(k1, 0);
        assert_eq!(t.open(a), 1);
        assert!(t.acquire(a, 0).is_ok());
        t.release(k2, 0);
        t.release(k2, 0);
        assert_eq!(t.open(a), 0);
        assert_eq!(t.len(), 2, "no connections and no bucket: {a} is gone");
        t.release(k2, 0);
        t.release(b1, 0);
        t.release(b2, 0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn connect_rate_per_client() {
        let t = ClientTable::new(limits(0, Some(rate(1, 2)), 1000));
        let a = ip("203.0.113.9");
        let k = t.acquire(a, 0).unwrap();
        t.release(k, 10);
        t.acquire(a, 20).unwrap();
        assert_eq!(
            t.acquire(a, 30),
            Err(Refusal::RateLimited(RetryAfter { ms: 970 }))
        );
        assert_eq!(t.open(a), 1, "a refusal counts nothing");
        assert!(
            t.acquire(ip("203.0.113.10"), 30).is_ok(),
            "others are not slowed"
        );
        assert!(t.acquire(a, 1000).is_ok());
    }

    #[test]
    fn entries_go_once_idle() {
        let t = ClientTable::new(limits(0, Some(rate(1, 1)), 1000));
        let k = t.acquire(ip("192.0.2.1"), 0).unwrap();
        t.release(k, 500);
        assert_eq!(
            t.len(),
            1,
            "still refilling: kept so reconnecting is still limited"
        );
        assert_eq!(t.sweep(999), 0);
        assert_eq!(t.sweep(1000), 1);
        assert!(t.is_empty());
        let k = t.acquire(ip("192.0.2.1"), 2000).unwrap();
        t.release(k, 3000);
        assert!(t.is_empty(), "refilled by the release: gone at once");
    }

    #[test]
    fn full_table_forgets_the_disconnected_then_refuses() {
        let t = ClientTable::with_shards(limits(0, Some(rate(1, 1)), 3), 1);
        let held: Vec<ClientKey> = (1..=3)
            .map(|i| {
                t.acquire(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 0)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            t.acquire(ip("10.0.0.4"), 0),
            Err(Refusal::TableFull),
            "everyone holds a connection"
        );
        // 10.0.0.1 leaves; its bucket is still refilling, but room is made.
        t.release(held[0], 10);
        assert!(t.acquire(ip("10.0.0.4"), 20).is_ok());
        assert_eq!(t.len(), 3);
        assert_eq!(t.acquire(ip("10.0.0.5"), 20), Err(Refusal::TableFull));
        // Known clients are still served at capacity.
        assert!(t.acquire(ip("10.0.0.2"), 2000).is_ok());
        assert_eq!(Refusal::TableFull.http_status(), 503);
    }

    #[test]
    fn memory_comes_back_after_a_flood() {
        let t = ClientTable::new(limits(0, Some(rate(1, 1)), 100_000));
        for i in 0..20_000u32 {
            let k = t
                .acquire(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 0)
                .unwrap();
            t.release(k, 0);
        }
        assert_eq!(t.len(), 20_000);
        assert_eq!(t.sweep(1000), 20_000);
        let capacity: usize = t.shards.iter().map(|s| lock(s).capacity()).sum();
        assert!(capacity < 1000, "shrunk after the sweep: {capacity}");
    }

    #[test]
    fn refusals_map_to_statuses() {
        let wait = RetryAfter { ms: 1500 };
        assert_eq!(Refusal::TooManyConnections.http_status(), 429);
        assert_eq!(Refusal::RateLimited(wait).http_status(), 429);
        assert_eq!(
            Refusal::RateLimited(wait)
                .retry_after()
                .map(RetryAfter::secs),
            Some(2)
        );
        assert_eq!(Refusal::TooManyConnections.retry_after(), None);
        assert!(Refusal::TableFull.to_string().starts_with("503 "));
    }

    /// Eight workers race for one address limited to five connections: exactly five win.
    #[test]
    fn racing_workers_respect_the_limit() {
        let t = Arc::new(ClientTable::new(limits(5, None, 1000)));
        let start = Arc::new(Barrier::new(8));
        let wins: usize = (0..8)
            .map(|_| {
                let (t, start) = (Arc::clone(&t), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    t.acquire(ip("192.0.2.50"), 0).is_ok()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(wins, 5);
        assert_eq!(t.open(ip("192.0.2.50")), 5);
    }

    /// Workers connecting and closing many clients at once leave the counts exact.
    #[test]
    fn counts_stay_exact_under_concurrency() {
        let t = Arc::new(ClientTable::new(limits(1000, None, 10_000)));
        let threads: Vec<_> = (0..4u16)
            .map(|w| {
                let t = Arc::clone(&t);
                thread::spawn(move || {
                    let mut held = Vec::new();
                    for round in 0..2000u16 {
                        let addr = SocketAddr::from(([10, 1, (round % 64) as u8, 1], w));
                        held.push(t.acquire(addr.ip(), u64::from(round)).unwrap());
                        if round.is_multiple_of(3) {
                            t.release(held.swap_remove(0), u64::from(round));
                        }
                    }
                    held
                })
            })
            .collect();
        let held: Vec<ClientKey> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let open: u32 = (0..64)
            .map(|i| t.open(IpAddr::V4(Ipv4Addr::new(10, 1, i, 1))))
            .sum();
        assert_eq!(open as usize, held.len());
        for k in held {
            t.release(k, 5000);
        }
        assert!(t.is_empty());
    }
}
