//! scratch
#[path = "support/rabbitmq.rs"]
mod rabbitmq;

#[test]
fn broker_boots() {
    let b = rabbitmq::Broker::shared();
    eprintln!("port {}", b.port());
    b.crash_and_restart().unwrap();
    eprintln!("restarted");
}
