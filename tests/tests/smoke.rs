//! The three services start on fresh databases and report SERVING on gRPC health.

use docket_tests::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_starts_and_reports_serving() {
    let suite = Suite::start().await;
    for addr in [suite.ticket.addr, suite.audit.addr, suite.metrics.addr] {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let serving = docket_tests::eventually(std::time::Duration::from_secs(10), || {
            let mut health = health.clone();
            async move {
                let response = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.ok()?;
                (response.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32).then_some(())
            }
        })
        .await;
        assert!(serving.is_some(), "service on {addr} never reported SERVING");
        let _ = &mut health;
    }
}
