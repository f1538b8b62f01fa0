//! What keeps a login flood from queueing real users (issue 18, finding 8):
//! a token bucket per client address for logins from browsers the node does
//! not know, and the signed "known device" cookie that lets a browser that
//! logged in as a user before skip that bucket for that user.
//!
//! Why both: many staff share one address (a town hall's NAT, a reverse
//! proxy), and a flood may come from it too, so a limit per address alone
//! would lock the real users out with the flood. A browser that has logged
//! in as `sato` holds a cookie, signed by the node, naming `sato`; a login
//! as `sato` from it skips the address's bucket and takes the hashing
//! threads' first lane (`hashing::Lane::Known`). A made-up name never has
//! one. Every login still spends one password hash, known name or not, so
//! timing reveals no more than before about which names exist; the cookie
//! reveals nothing to its holder they did not type themselves.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Logins from browsers the node does not know that one address may start
/// in a burst, and how fast the allowance comes back: one every
/// [`LOGIN_REFILL_MS`]. A successful login gives its token back, so only
/// failures (and logins refused as locked out) use the allowance up.
pub const LOGIN_BURST: f64 = 20.0;
pub const LOGIN_REFILL_MS: i64 = 3_000;
/// Addresses tracked at once; beyond that, addresses whose allowance is
/// whole again are forgotten first.
const MAX_ADDRESSES: usize = 10_000;
/// How long a known-device cookie lasts, in seconds.
pub const KNOWN_DEVICE_SECS: i64 = 30 * 24 * 3600;
/// The cookie naming the user this browser last logged in as.
pub const DEVICE_COOKIE: &str = "yui_device";

/// The part of an address a flood cannot vary cheaply: an IPv4 address, or
/// the /64 prefix of an IPv6 one (one host's usual allocation).
fn key_of(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64 << 64) | (1 << 127),
        },
    }
}

struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    fn refill(&mut self, now_ms: i64) {
        let gained = (now_ms - self.at_ms).max(0) as f64 / LOGIN_REFILL_MS as f64;
        self.tokens = (self.tokens + gained).min(LOGIN_BURST);
        self.at_ms = now_ms;
    }
}

/// The per-address allowances.
#[derive(Default)]
pub struct AddressLimits {
    buckets: Mutex<HashMap<u128, Bucket>>,
}

impl AddressLimits {
    /// Takes one login from `addr`'s allowance, or says in how many
    /// seconds one is available again.
    pub fn take(&self, addr: IpAddr, now_ms: i64) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_ADDRESSES {
            buckets.retain(|_, b| {
                b.refill(now_ms);
                b.tokens < LOGIN_BURST
            });
            if buckets.len() >= MAX_ADDRESSES {
                // Still full: a flood from very many addresses. The hashing
                // queue's own bound holds it; forget the oldest half.
                let mut ages: Vec<i64> = buckets.values().map(|b| b.at_ms).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                buckets.retain(|_, b| b.at_ms > cut);
            }
        }
        let bucket = buckets.entry(key_of(addr)).or_insert(Bucket {
            tokens: LOGIN_BURST,
            at_ms: now_ms,
        });
        bucket.refill(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = ((1.0 - bucket.tokens) * LOGIN_REFILL_MS as f64).ceil() as u64;
            Err(wait_ms.div_ceil(1000).max(1))
        }
    }

    /// Gives back a login taken by [`AddressLimits::take`] (it succeeded,
    /// or it never reached a hash).
    pub fn give_back(&self, addr: IpAddr) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get_mut(&key_of(addr)) {
            b.tokens = (b.tokens + 1.0).min(LOGIN_BURST);
        }
    }
}

/// Signs and checks known-device cookies: `NAME.EXPIRES.MAC`, where MAC is
/// HMAC-SHA-256 over the name and expiry with a key derived from the node's
/// API token (a secret of the data directory: changing it forgets every
/// known device).
pub struct Devices {
    key: ring::hmac::Key,
}

impl Devices {
    pub fn new(node_token: &str) -> Devices {
        let derived = ring::digest::digest(
            &ring::digest::SHA256,
            format!("yui-known-device-key:{node_token}").as_bytes(),
        );
        Devices {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    fn mac(&self, name: &str, expires: i64) -> String {
        let tag = ring::hmac::sign(&self.key, format!("{name}\n{expires}").as_bytes());
        super::hex(tag.as_ref())
    }

    /// A cookie value for a browser that just logged in as `name`.
    pub fn issue(&self, name: &str, now_ms: i64) -> String {
        let expires = now_ms.div_euclid(1000) + KNOWN_DEVICE_SECS;
        format!("{name}.{expires}.{}", self.mac(name, expires))
    }

    /// Whether `cookie` was issued by this node for `name` and is unexpired.
    pub fn vouches_for(&self, cookie: &str, name: &str, now_ms: i64) -> bool {
        let mut parts = cookie.rsplitn(3, '.');
        let (Some(mac), Some(expires), Some(named)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(expires) = expires.parse::<i64>() else {
            return false;
        };
        named == name
            && expires > now_ms.div_euclid(1000)
            && super::constant_time_eq(mac.as_bytes(), self.mac(name, expires).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_has_a_burst_then_a_slow_refill_and_successes_give_back() {
        let limits = AddressLimits::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..LOGIN_BURST as usize {
            assert!(limits.take(a, 0).is_ok());
        }
        let wait = limits.take(a, 0).expect_err("spent");
        assert_eq!(wait, (LOGIN_REFILL_MS as u64).div_ceil(1000));
        assert!(limits.take(b, 0).is_ok(), "another address is not affected");
        limits.give_back(a);
        assert!(limits.take(a, 0).is_ok(), "a success gives its token back");
        assert!(limits.take(a, LOGIN_REFILL_MS).is_ok(), "refilled");
        assert!(limits.take(a, LOGIN_REFILL_MS).is_err());
        // An IPv6 host varying its low 64 bits is one address.
        let v6a: IpAddr = "2001:db8::1".parse().expect("ip");
        let v6b: IpAddr = "2001:db8::ffff:1".parse().expect("ip");
        assert_eq!(key_of(v6a), key_of(v6b));
    }

    #[test]
    fn a_device_cookie_vouches_only_for_its_name_until_it_expires() {
        let devices = Devices::new("token");
        let cookie = devices.issue("sato.hanako", 1_000);
        assert!(devices.vouches_for(&cookie, "sato.hanako", 2_000));
        assert!(!devices.vouches_for(&cookie, "sato", 2_000));
        assert!(!devices.vouches_for(&cookie, "sato.hanako", (KNOWN_DEVICE_SECS + 2) * 1000));
        let forged = cookie.replacen("sato.hanako", "yamada", 1);
        assert!(!devices.vouches_for(&forged, "yamada", 2_000));
        assert!(!Devices::new("another").vouches_for(&cookie, "sato.hanako", 2_000));
        assert!(!devices.vouches_for("garbage", "garbage", 0));
    }
}
