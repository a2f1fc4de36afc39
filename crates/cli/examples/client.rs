//! Using mqpaxos from an application.
//!
//! Start a local cluster in one terminal (`mqpaxos cluster up`), then:
//!
//! ```text
//! cargo run --release -p mqpaxos --example client -- mqtt://127.0.0.1:1883
//! ```

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".to_string());
    let mut opts = mqpaxos::ClientOptions::new(&url, "client1");
    opts.timeout = Duration::from_secs(5);
    // With a broker that checks passwords: opts.broker.password = Some(...);
    let client = mqpaxos::Client::connect(opts).await?;

    client.put("color", "red").await?;
    println!("color = {:?}", client.get("color").await?);

    // Compare-and-swap: only one of several racing writers wins.
    let swapped = client.cas("color", Some("red"), "green").await?;
    println!("red -> green swapped: {swapped}");
    let swapped = client.cas("color", Some("red"), "blue").await?;
    println!("red -> blue swapped: {swapped} (it is green now)");

    client.append("log", "first;").await?;
    client.append("log", "second;").await?;
    println!("log = {:?}", client.get("log").await?);

    println!("deleted color: {}", client.delete("color").await?);
    println!("color = {:?}", client.get("color").await?);
    client.close().await;
    Ok(())
}
