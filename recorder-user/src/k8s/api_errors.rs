//! The daemon's API client, with every failed request counted by verb and HTTP code
//! ([`crate::audit::op_metrics`], `syscribe_api_errors_total` on /metrics): a tower layer
//! under kube's client, so every call site is counted — watches, lists, applies, status
//! patches — without each one saying so.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Method, Request, Response, Uri};
use kube::Client;

/// kube's client for this process's configuration (in-cluster, or the kubeconfig), counting
/// its failed requests.
pub async fn counting_client() -> Result<Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&CountErrors)
        .build())
}

/// Counts each request that gets a status of 400 or more, or no answer at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountErrors;

impl<S> tower_layer::Layer<S> for CountErrors {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Counting<S> {
        Counting { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Counting<S> {
    inner: S,
}

type Answer<R, E> = Pin<Box<dyn Future<Output = Result<Response<R>, E>> + Send>>;

impl<S, B, R> tower_service::Service<Request<B>> for Counting<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Answer<R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let verb = verb_of(request.method(), request.uri());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            match &answer {
                Ok(response) if response.status().as_u16() >= 400 => {
                    crate::audit::op_metrics::api_error(verb, Some(response.status().as_u16()));
                }
                Ok(_) => {}
                Err(_) => crate::audit::op_metrics::api_error(verb, None),
            }
            answer
        })
    }
}

/// The API verb of a request, as the API server's authorizer names it: a GET is a `watch`
/// (`watch=true|1`), a `list` (a collection's path) or a `get`; a DELETE of a collection is a
/// `deletecollection`.
pub fn verb_of(method: &Method, uri: &Uri) -> &'static str {
    let collection = is_collection(uri.path());
    match *method {
        Method::GET => {
            let watch = uri.query().is_some_and(|q| {
                q.split('&')
                    .any(|pair| matches!(pair, "watch=true" | "watch=1"))
            });
            if watch {
                "watch"
            } else if collection {
                "list"
            } else {
                "get"
            }
        }
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "other",
    }
}

/// Whether a resource path names a collection: `/api/v1/<plural>`,
/// `/api/v1/namespaces/<ns>/<plural>`, `/apis/<group>/<version>/…` alike.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    };
    let Some(mut rest) = rest else {
        return false;
    };
    if rest.len() >= 3 && rest[0] == "namespaces" {
        rest = &rest[2..];
    }
    rest.len() == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Api;

    #[test]
    fn requests_are_named_by_the_authorizers_verbs() {
        let cases = [
            (Method::GET, "/api/v1/pods?fieldSelector=x", "list"),
            (
                Method::GET,
                "/api/v1/pods?watch=true&resourceVersion=5",
                "watch",
            ),
            (Method::GET, "/api/v1/namespaces/shop/pods", "list"),
            (Method::GET, "/api/v1/namespaces/shop/pods/web", "get"),
            (Method::GET, "/api/v1/namespaces", "list"),
            (Method::GET, "/api/v1/namespaces/shop", "get"),
            (Method::GET, "/api/v1/nodes/n1", "get"),
            (
                Method::GET,
                "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles/p",
                "get",
            ),
            (
                Method::PATCH,
                "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles/p/status",
                "patch",
            ),
            (
                Method::DELETE,
                "/apis/security-profiles-operator.x-k8s.io/v1/securityprofilenodestatuses?labelSelector=a",
                "deletecollection",
            ),
            (
                Method::DELETE,
                "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles/p",
                "delete",
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events",
                "create",
            ),
            (Method::PUT, "/api/v1/namespaces/shop/pods/web", "update"),
        ];
        for (method, uri, verb) in cases {
            assert_eq!(
                verb_of(&method, &uri.parse().unwrap()),
                verb,
                "{method} {uri}"
            );
        }
    }

    /// A refused request and one that got no answer are both counted, by their verb.
    #[tokio::test]
    async fn failed_requests_are_counted() {
        let (service, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<kube::client::Body>>();
        let client = Client::new(tower_layer::Layer::layer(&CountErrors, service), "default");
        let conflicts = || {
            let mut text = String::new();
            crate::audit::op_metrics::render(&mut text);
            text.lines()
                .find(|l| l.starts_with("syscribe_api_errors_total{verb=\"get\",code=\"418\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = conflicts();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "no", "reason": "Teapot", "code": 418});
            send.send_response(
                Response::builder()
                    .status(418)
                    .body(kube::client::Body::from(
                        serde_json::to_vec(&status).unwrap(),
                    ))
                    .unwrap(),
            );
        });
        let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
        assert!(api.get("n1").await.is_err());
        server.await.unwrap();
        assert_eq!(conflicts(), before + 1);
    }
}
