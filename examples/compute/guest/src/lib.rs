//! compute: CPU- and memory-heavy work on every request, the kind of guest
//! whose speed is its own machine code rather than the host's plumbing.
//!
//! `GET /?n=N` sieves the primes below `N` (default 4,000,000: an N-byte table)
//! and sorts 300,000 pseudo-random `u32`s, then answers with the prime count
//! and a checksum of the sorted numbers, so none of the work can be skipped.

wit_bindgen::generate!({
    path: "../../wit",
    world: "qwasr:examples/hello-http",
    generate_all,
});

guest_util::http_helpers!(wasi::io0_2_12::streams);

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

/// Numbers sorted per request.
const SORTED: usize = 300_000;
/// Sieve size unless the query asks for another; one past the memory limit
/// ends the request with a 500 (the allocation fails), not the runtime.
const SIEVE: usize = 4_000_000;

struct Compute;

impl Guest for Compute {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let n = path
            .split_once("n=")
            .and_then(|(_, v)| v.split('&').next()?.parse::<usize>().ok())
            .unwrap_or(SIEVE);
        let primes = sieve(n);
        let checksum = sorted_checksum(SORTED);
        let body = format!("primes below {n}: {primes}\nchecksum of {SORTED} sorted: {checksum}\n");
        http::respond(out, 200, &body);
    }
}

/// How many primes are below `n` (sieve of Eratosthenes over a byte table).
fn sieve(n: usize) -> usize {
    if n < 3 {
        return 0;
    }
    let mut composite = vec![false; n];
    let mut i = 2;
    while i * i < n {
        if !composite[i] {
            let mut j = i * i;
            while j < n {
                composite[j] = true;
                j += i;
            }
        }
        i += 1;
    }
    composite[2..].iter().filter(|c| !**c).count()
}

/// Sorts `len` xorshift numbers and folds them into a position-weighted sum.
fn sorted_checksum(len: usize) -> u64 {
    let mut x: u32 = 0x9e37_79b9;
    let mut v: Vec<u32> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        })
        .collect();
    v.sort_unstable();
    v.iter()
        .enumerate()
        .fold(0u64, |acc, (i, &n)| acc.wrapping_add((i as u64 + 1).wrapping_mul(n as u64)))
}

export!(Compute);
