//! `syncd local`: a whole cluster on loopback in one process.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use crate::cli::{LocalArgs, Role};
use crate::node::{Node, NodeConfig, stop_signal};

/// Starts the nodes, prints how to reach them, runs until Ctrl-C or SIGTERM, then stops them all.
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    let count = u64::from(args.nodes);
    let mut peers = BTreeMap::new();
    for i in 0..count {
        let port = args.base_port.checked_add(i as u16).ok_or_else(|| {
            anyhow::anyhow!(
                "--base-port {} leaves no room for {count} nodes",
                args.base_port
            )
        })?;
        peers.insert(i, format!("127.0.0.1:{port}"));
    }
    let mut nodes = Vec::new();
    for (id, addr) in &peers {
        let listen: SocketAddr = addr.parse()?;
        let config = NodeConfig {
            id: *id,
            listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
            data_dir: args.data_dir.join(format!("node-{id}")),
            roles: vec![Role::Lock, Role::Queue, Role::Cache],
            peers: peers.clone(),
            discovery: None,
            replication_factor: args.replication_factor,
            queue: args.queue.clone(),
            cache: args.cache.clone(),
            tuning: args.tuning.clone(),
        };
        nodes.push(Node::start(config).await?);
    }
    print_banner(&peers, &args);
    stop_signal().await;
    // Every node stops at once, so there is nobody to hand raft leadership to.
    let mut stopping = tokio::task::JoinSet::new();
    for node in nodes {
        stopping.spawn(node.stop(false));
    }
    while stopping.join_next().await.is_some() {}
    Ok(())
}

fn print_banner(peers: &BTreeMap<u64, String>, args: &LocalArgs) {
    let first = peers.values().next().cloned().unwrap_or_default();
    println!(
        "syncd local: {} nodes, data in {}",
        peers.len(),
        args.data_dir.display()
    );
    for (id, addr) in peers {
        println!("  node {id}: http://{addr}");
    }
    println!();
    println!("Try:");
    println!(
        "  curl -s -X POST http://{first}/v1/locks/demo/acquire -d '{{\"owner\":\"alice\",\"ttl_ms\":30000}}'"
    );
    println!("  curl -s http://{first}/v1/locks/demo");
    println!("  curl -s -X POST http://{first}/v1/locks/demo/release -d '{{\"owner\":\"alice\"}}'");
    println!(
        "  curl -s -X POST http://{first}/v1/queues/jobs/messages -d '{{\"body\":\"hello\"}}'"
    );
    println!(
        "  curl -s -X POST http://{first}/v1/queues/jobs/receive -d '{{\"max\":10,\"visibility_ms\":30000}}'"
    );
    println!("  curl -s http://{first}/v1/ring");
    let second = peers
        .values()
        .nth(1)
        .cloned()
        .unwrap_or_else(|| first.clone());
    println!("  curl -s -X PUT http://{first}/v1/cache/greeting --data-binary 'hello'");
    println!("  curl -si http://{second}/v1/cache/greeting   # X-Cache: miss, then hit");
    println!("  curl -s http://{second}/v1/cache/greeting/state");
    println!("  curl -s http://{first}/v1/cache");
    println!("  curl -s http://{first}/v1/status");
    println!();
    println!("Ctrl-C stops the cluster; its data survives for the next start.");
}
