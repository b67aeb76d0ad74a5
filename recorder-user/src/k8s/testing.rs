//! tower-test scenarios for the reconcilers: a mock API server answering the client's
//! requests in order, each asserted, with a timeout on both sides.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::{Client, client::Body};
use serde_json::Value;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub fn mock() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// The next request: asserts its method and URI, answers `reply`, returns its JSON body.
pub async fn expect(handle: &mut Handle, method: Method, uri: &str, reply: Value) -> Value {
    let (request, send) = handle
        .next_request()
        .await
        .expect("the client made a request");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().to_string(), uri);
    let body = request.into_body().collect_bytes().await.unwrap();
    send.send_response(
        Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    }
}

/// Runs the client side and the API server side together, within a second.
pub async fn scenario<C, S>(client_side: C, server_side: S) -> C::Output
where
    C: std::future::Future,
    S: std::future::Future<Output = ()> + Send + 'static,
{
    scenario_within(Duration::from_secs(1), client_side, server_side).await
}

/// The same with a longer limit (a scenario that runs a real container).
pub async fn scenario_within<C, S>(limit: Duration, client_side: C, server_side: S) -> C::Output
where
    C: std::future::Future,
    S: std::future::Future<Output = ()> + Send + 'static,
{
    let server = tokio::spawn(server_side);
    let out = tokio::time::timeout(limit, client_side)
        .await
        .expect("client side timed out");
    tokio::time::timeout(limit, server)
        .await
        .expect("server side timed out")
        .expect("server side assertions");
    out
}
