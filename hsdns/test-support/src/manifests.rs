//! Manifests generated for tests and benchmarks, in the form `kubectl get
//! -o yaml` prints them, so they go through the same parser as a user's.

/// A headless Service `ns/name` and one EndpointSlice with `n` ready IPv4
/// endpoints without hostnames (169.254.100.1 on), as kubectl prints them:
/// large answers for tests and benchmarks.
pub fn headless_yaml(ns: &str, name: &str, n: usize) -> String {
    let mut eps = String::new();
    for i in 0..n {
        eps.push_str(&format!(
            "  - addresses: [\"169.254.{}.{}\"]\n    conditions: {{ready: true}}\n",
            100 + i / 200,
            1 + i % 200
        ));
    }
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{clusterIP: None, clusterIPs: [None], ports: [{{name: web, port: 80}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-x, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: web, port: 80}}]\nendpoints:\n{eps}"
    )
}
