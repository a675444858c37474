//! keyvalue-spin: a guest built against Spin's variant of
//! `wasi:keyvalue@0.2.0-draft2`, whose `batch.get-many` returns one
//! `(key, option<value>)` per requested key (the proposal returns
//! `option<(key, value)>`).
//!
//! `GET /` runs, in order, the checks of Spin's own wasi-key-value
//! conformance test (bucket grants, store basics, overwrite, listing,
//! deletes, batch, increment, compare-and-swap) and answers `ok`, or 500
//! with the first check that failed. The keys it uses (`bar`, `qux`, `baz`,
//! `counter`) are deleted afterwards, pass or fail, so it can run again;
//! two runs at once would see each other's keys.

wit_bindgen::generate!({
    path: "../wit",
    world: "qwasr:keyvalue-spin/keyvalue-spin",
    generate_all,
});
guest_util::http_helpers!(wasi::io::streams);

use exports::wasi::http::incoming_handler::Guest;
use http::respond;
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use wasi::keyvalue::atomics::{self, Cas};
use wasi::keyvalue::batch;
use wasi::keyvalue::store::{self, Bucket, Error};

struct KeyvalueSpin;

impl Guest for KeyvalueSpin {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if !matches!(request.method(), Method::Get) {
            return respond(out, 405, "only GET is supported\n");
        }
        let result = conformance();
        if let Ok(bucket) = store::open("default") {
            for key in ["bar", "qux", "baz", "counter"] {
                let _ = bucket.delete(key);
            }
        }
        match result {
            Ok(()) => respond(out, 200, "ok\n"),
            Err(failed) => respond(out, 500, &format!("{failed}\n")),
        }
    }
}

/// `check!(step, value, pattern)`: fails with the step and what came back
/// unless `value` matches `pattern`.
macro_rules! check {
    ($step:expr, $value:expr, $($pattern:tt)+) => {{
        let value = $value;
        if !matches!(&value, $($pattern)+) {
            return Err(format!("{}: got {:?}", $step, value));
        }
    }};
}

/// Every key of the bucket, following cursors.
fn keys(bucket: &Bucket) -> Result<Vec<String>, Error> {
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = bucket.list_keys(cursor.as_deref())?;
        all.extend(page.keys);
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    all.sort();
    Ok(all)
}

fn s(v: &str) -> String {
    v.to_string()
}

fn b(v: &str) -> Vec<u8> {
    v.as_bytes().to_vec()
}

fn conformance() -> Result<(), String> {
    check!(
        "open(\"forbidden\") is access-denied",
        store::open("forbidden"),
        Err(Error::AccessDenied)
    );
    let bucket =
        store::open("default").map_err(|e| format!("open(\"default\"): got Err({e:?})"))?;

    // Nothing set yet.
    check!("delete of a missing key", bucket.delete("bar"), Ok(()));
    check!("exists on a missing key", bucket.exists("bar"), Ok(false));
    check!("get of a missing key", bucket.get("bar"), Ok(None));
    check!("list-keys of an empty bucket", keys(&bucket), Ok(k) if k.is_empty());

    // One key.
    check!("set bar=baz", bucket.set("bar", b"baz"), Ok(()));
    check!("exists after set", bucket.exists("bar"), Ok(true));
    check!("get after set", bucket.get("bar"), Ok(Some(v)) if v == b"baz");
    check!("list-keys after set", keys(&bucket), Ok(k) if *k == [s("bar")]);

    // Overwrite.
    check!("set bar=wow (overwrite)", bucket.set("bar", b"wow"), Ok(()));
    check!("exists after overwrite", bucket.exists("bar"), Ok(true));
    check!("get after overwrite", bucket.get("bar"), Ok(Some(v)) if v == b"wow");
    check!("list-keys after overwrite", keys(&bucket), Ok(k) if *k == [s("bar")]);

    // A second key.
    check!("set qux=yay", bucket.set("qux", b"yay"), Ok(()));
    check!("list-keys with two keys", keys(&bucket), Ok(k) if *k == [s("bar"), s("qux")]);

    // Deletes (twice is fine).
    check!("delete bar", bucket.delete("bar"), Ok(()));
    check!("delete bar again", bucket.delete("bar"), Ok(()));
    check!("delete qux", bucket.delete("qux"), Ok(()));
    check!("exists after delete", bucket.exists("bar"), Ok(false));
    check!("get after delete", bucket.get("qux"), Ok(None));
    check!("list-keys after deletes", keys(&bucket), Ok(k) if k.is_empty());

    // Batch, with Spin's get-many shape: one (key, option<value>) per key asked, in order.
    let pairs = [(s("bar"), b("bin")), (s("baz"), b("buzz"))];
    check!(
        "set-many bar=bin baz=buzz",
        batch::set_many(&bucket, &pairs),
        Ok(())
    );
    let asked = [s("bar"), s("missing"), s("baz")];
    let expected = vec![
        (s("bar"), Some(b("bin"))),
        (s("missing"), None),
        (s("baz"), Some(b("buzz"))),
    ];
    check!("get-many bar,missing,baz", batch::get_many(&bucket, &asked), Ok(got) if *got == expected);
    check!(
        "delete-many bar,baz",
        batch::delete_many(&bucket, &[s("bar"), s("baz")]),
        Ok(())
    );
    check!(
        "exists after delete-many",
        (bucket.exists("bar"), bucket.exists("baz")),
        (Ok(false), Ok(false))
    );

    // Atomics.
    check!(
        "increment counter by 10",
        atomics::increment(&bucket, "counter", 10),
        Ok(10)
    );
    check!(
        "increment counter by 5",
        atomics::increment(&bucket, "counter", 5),
        Ok(15)
    );

    // Compare and swap.
    check!("set bar=wow for cas", bucket.set("bar", b"wow"), Ok(()));
    let cas = Cas::new(&bucket, "bar").map_err(|e| format!("cas new on bar: got Err({e:?})"))?;
    check!("cas current", cas.current(), Ok(Some(v)) if v == b"wow");
    check!(
        "cas swap to swapped",
        atomics::swap(cas, b"swapped"),
        Ok(())
    );
    check!("get after swap", bucket.get("bar"), Ok(Some(v)) if v == b"swapped");
    Ok(())
}

export!(KeyvalueSpin);
