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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_without_database_reports_not_serving() {
    // Nothing listens on port 1 of 127.0.0.1, so the database never accepts connections.
    let db = docket_tests::TestDb {
        name: "docket_test_unreachable".to_owned(),
        url: "postgres://postgres@127.0.0.1:1/docket_test_unreachable".to_owned(),
    };
    let audit = docket_tests::start_audit_without_waiting(&db).await;
    let channel = tonic::transport::Channel::from_shared(audit.endpoint()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);

    for _ in 0..5 {
        let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
        let status = health.check(request).await.expect("health answers without a database").into_inner().status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    audit.stop().await;
}
