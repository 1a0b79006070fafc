//! The documented key function, computed by the server in SQL, equals the
//! library's.

use withlock::pg::advisory_key;

use withlock_pg_testing::TestServer;

#[test]
fn the_sql_in_the_docs_computes_the_same_key() {
    let server = TestServer::start();
    let mut client = server.client();
    for name in ["deploy", "a", "build-2.x_y", "ünïcode", &"n".repeat(128)] {
        let sql_key: i64 = client
            .query_one(
                "SELECT ('x' || encode(substring(sha256(convert_to('withlock:' || $1, 'UTF8')) \
                 FROM 1 FOR 8), 'hex'))::bit(64)::bigint | (-9223372036854775808)::bigint",
                &[&name],
            )
            .unwrap()
            .get(0);
        assert_eq!(sql_key, advisory_key(name), "key of {name:?}");
    }
}

#[test]
fn the_key_of_deploy_is_pinned() {
    // Other tools compute this: it must never change.
    assert_eq!(advisory_key("deploy"), PINNED_DEPLOY_KEY);
}

/// `advisory_key("deploy")`, computed with Python's hashlib.
const PINNED_DEPLOY_KEY: i64 = -3104727310639737204;
