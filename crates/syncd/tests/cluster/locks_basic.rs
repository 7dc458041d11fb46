//! Lock semantics across nodes: modes, waiting, timeouts, deadlocks, leases, tokens, and "any node accepts".

use syncd_client::syncd_api::locks::{
    AcquireRequest, AcquireResponse, LockMode, ReleaseRequest, RenewRequest,
};
use syncd_client::{Client, ClientError, ErrorCode};

use super::harness::{Cluster, eventually};

pub fn req(owner: &str, mode: LockMode, ttl_ms: u64, wait_ms: u64) -> AcquireRequest {
    AcquireRequest {
        owner: owner.to_owned(),
        mode,
        ttl_ms,
        wait_ms,
    }
}

pub async fn acquire(
    c: &Client,
    name: &str,
    owner: &str,
    mode: LockMode,
    wait_ms: u64,
) -> Result<AcquireResponse, ClientError> {
    c.acquire(name, &req(owner, mode, 60_000, wait_ms)).await
}

pub fn code(r: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match r {
        Err(e) => e.code().unwrap_or_else(|| panic!("no problem code in {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

async fn release(c: &Client, name: &str, owner: &str) {
    c.release(
        name,
        &ReleaseRequest {
            owner: owner.to_owned(),
            token: None,
        },
    )
    .await
    .expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_semantics_across_nodes() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let (a, b, c) = (cluster.client(0), cluster.client(1), cluster.client(2));
    let mut last_token = 0;
    let mut fresh = |token: u64| {
        assert!(token > last_token, "token {token} after {last_token}");
        last_token = token;
    };

    // Shared holders coexist, on different nodes.
    let s1 = acquire(&a, "shared", "r1", LockMode::Shared, 0)
        .await
        .unwrap();
    fresh(s1.token);
    let s2 = acquire(&b, "shared", "r2", LockMode::Shared, 0)
        .await
        .unwrap();
    fresh(s2.token);
    let info = c.lock("shared").await.unwrap();
    assert_eq!(info.mode, Some(LockMode::Shared));
    assert_eq!(info.holders.len(), 2);
    // ... and exclude an exclusive request.
    assert_eq!(
        code(acquire(&c, "shared", "w", LockMode::Exclusive, 0).await),
        ErrorCode::LockConflict
    );

    // Exclusive excludes everyone; re-acquiring is idempotent (same token).
    let x = acquire(
        &cluster.client(follower),
        "x",
        "owner-1",
        LockMode::Exclusive,
        0,
    )
    .await
    .unwrap();
    fresh(x.token);
    let again = acquire(&a, "x", "owner-1", LockMode::Exclusive, 0)
        .await
        .unwrap();
    assert_eq!(again.token, x.token);
    assert_eq!(
        code(acquire(&b, "x", "owner-2", LockMode::Shared, 0).await),
        ErrorCode::LockConflict
    );

    // wait_ms runs out: 409 lock_conflict, and the waiter is gone afterwards.
    assert_eq!(
        code(acquire(&b, "x", "owner-2", LockMode::Exclusive, 300).await),
        ErrorCode::LockConflict
    );
    eventually("the timed-out waiter to leave the queue", || async {
        c.lock("x").await.ok()?.waiters.is_empty().then_some(())
    })
    .await;

    // A waiter on another node is granted when the holder releases.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { acquire(&b, "x", "owner-3", LockMode::Exclusive, 20_000).await })
    };
    eventually("owner-3 to be queued", || async {
        let info = c.lock("x").await.ok()?;
        (info.waiters.len() == 1).then_some(())
    })
    .await;
    release(&c, "x", "owner-1").await;
    let granted = waiter.await.unwrap().unwrap();
    assert_eq!(granted.owner, "owner-3");
    fresh(granted.token);

    // Stale token and not-held answers.
    let stale = c
        .release(
            "x",
            &ReleaseRequest {
                owner: "owner-3".into(),
                token: Some(x.token),
            },
        )
        .await;
    assert_eq!(code(stale), ErrorCode::StaleToken);
    let not_held = c
        .release(
            "x",
            &ReleaseRequest {
                owner: "nobody".into(),
                token: None,
            },
        )
        .await;
    assert_eq!(code(not_held), ErrorCode::NotHeld);
    let renewed = a
        .renew(
            "x",
            &RenewRequest {
                owner: "owner-3".into(),
                ttl_ms: 90_000,
                token: Some(granted.token),
            },
        )
        .await
        .unwrap();
    assert!(renewed.expires_at_ms > granted.expires_at_ms);

    // The list shows every lock with holders.
    let names: Vec<String> = a
        .locks()
        .await
        .unwrap()
        .locks
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, vec!["shared".to_owned(), "x".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_deadlock_is_refused_at_once() {
    let cluster = Cluster::start(3);
    cluster.leader().await;
    let (n0, n1, n2) = (cluster.client(0), cluster.client(1), cluster.client(2));
    acquire(&n0, "a", "c1", LockMode::Exclusive, 0)
        .await
        .unwrap();
    acquire(&n1, "b", "c2", LockMode::Exclusive, 0)
        .await
        .unwrap();
    // c1 waits for b (on yet another node).
    let c1_waits = {
        let n2 = n2.clone();
        tokio::spawn(async move { acquire(&n2, "b", "c1", LockMode::Exclusive, 20_000).await })
    };
    eventually("c1 to wait for b", || async {
        (n0.lock("b").await.ok()?.waiters.len() == 1).then_some(())
    })
    .await;
    // c2 asking for a closes the cycle: refused at once, nothing else changes.
    let before = n0.locks().await.unwrap();
    let refused = acquire(&n1, "a", "c2", LockMode::Exclusive, 20_000).await;
    assert_eq!(code(refused), ErrorCode::Deadlock);
    assert_eq!(n0.locks().await.unwrap(), before);
    // Breaking the deadlock the normal way: c2 gives b up, c1 gets it.
    release(&n1, "b", "c2").await;
    let granted = c1_waits.await.unwrap().unwrap();
    assert_eq!(granted.owner, "c1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_passes_the_lock_to_the_waiter() {
    let cluster = Cluster::start(3);
    cluster.leader().await;
    let (n0, n1) = (cluster.client(0), cluster.client(1));
    let held = n0
        .acquire("lease", &req("sleepy", LockMode::Exclusive, 400, 0))
        .await
        .unwrap();
    // The waiter asks for far longer than the lease; it gets the lock once the lease runs out, without the
    // holder doing anything.
    let granted = acquire(&n1, "lease", "patient", LockMode::Exclusive, 20_000)
        .await
        .unwrap();
    assert_eq!(granted.owner, "patient");
    assert!(granted.token > held.token);
    assert!(granted.expires_at_ms > held.expires_at_ms);
    // The old holder lost it.
    let renew = n0
        .renew(
            "lease",
            &RenewRequest {
                owner: "sleepy".into(),
                ttl_ms: 1000,
                token: None,
            },
        )
        .await;
    assert_eq!(code(renew), ErrorCode::NotHeld);
}
