//! An in-process Kubernetes API server for Services, EndpointSlices,
//! Namespaces and Pods that
//! speaks the real list/watch HTTP protocol to kube-rs's real client: lists
//! with a resourceVersion, watches streaming ADDED/MODIFIED/DELETED/BOOKMARK
//! events as chunked JSON lines, 410 Gone for compacted history, dropped
//! connections, and an "unreachable" switch. Loopback only.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::broadcast,
};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Kind {
    Service,
    EndpointSlice,
    Namespace,
    Pod,
}

impl Kind {
    fn list_kind(self) -> &'static str {
        match self {
            Kind::Service => "ServiceList",
            Kind::EndpointSlice => "EndpointSliceList",
            Kind::Namespace => "NamespaceList",
            Kind::Pod => "PodList",
        }
    }
    fn api_version(self) -> &'static str {
        match self {
            Kind::Service | Kind::Namespace | Kind::Pod => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
        }
    }
}

#[derive(Clone)]
struct Event {
    rv: u64,
    kind: Kind,
    typ: &'static str,
    object: Value,
}

struct State {
    rv: u64,
    /// Events at or below this resourceVersion are forgotten: watching from
    /// an older version gets 410 Gone.
    compacted: u64,
    /// Each object with its JSON text, encoded once when written (as the
    /// API server's watch cache keeps objects encoded), so a list of
    /// 150,000 pods' slices is a concatenation, not a re-encoding.
    objects: BTreeMap<(Kind, String, String), (Value, Arc<str>)>,
    history: Vec<Event>,
    down: bool,
    /// List requests served (pages included).
    lists: usize,
    /// Every (path, watch?) asked, known or not: what the client needs.
    requests: std::collections::BTreeSet<(String, bool)>,
}

pub struct ApiServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Option<Event>>,
}

impl ApiServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            compacted: 0,
            objects: BTreeMap::new(),
            history: vec![],
            down: false,
            lists: 0,
            requests: Default::default(),
        }));
        let (events, _) = broadcast::channel(4096);
        let (st, ev) = (state.clone(), events.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                if st.lock().unwrap().down {
                    // Unreachable: the connection is refused by closing it.
                    drop(conn);
                    continue;
                }
                // As Go's net package (the real API server) does: without
                // it, a watch event written right after another waits for
                // the client's delayed ACK (up to 40 ms).
                let _ = conn.set_nodelay(true);
                let (st, ev) = (st.clone(), ev.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, st, ev).await;
                });
            }
        });
        Self {
            addr,
            state,
            events,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig file pointing at this server.
    pub fn kubeconfig(&self, path: &std::path::Path) {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
                 clusters: [{{name: t, cluster: {{server: \"{}\"}}}}]\n\
                 contexts: [{{name: t, context: {{cluster: t, user: t}}}}]\n\
                 users: [{{name: t, user: {{}}}}]\n",
                self.url()
            ),
        )
        .unwrap();
    }

    /// Creates or replaces an object (its JSON as `kubectl get -o json`
    /// prints it), as ADDED or MODIFIED. Returns its new resourceVersion.
    pub fn apply(&self, kind: Kind, mut obj: Value) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        obj["apiVersion"] = json!(kind.api_version());
        let key = key(kind, &obj);
        let typ = if s.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let text: Arc<str> = obj.to_string().into();
        s.objects.insert(key, (obj.clone(), text));
        let e = Event {
            rv,
            kind,
            typ,
            object: obj,
        };
        s.history.push(e.clone());
        let _ = self.events.send(Some(e));
        rv
    }

    pub fn delete(&self, kind: Kind, ns: &str, name: &str) {
        let mut s = self.state.lock().unwrap();
        let Some((mut obj, _)) = s.objects.remove(&(kind, ns.into(), name.into())) else {
            return;
        };
        s.rv += 1;
        let rv = s.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let e = Event {
            rv,
            kind,
            typ: "DELETED",
            object: obj,
        };
        s.history.push(e.clone());
        let _ = self.events.send(Some(e));
    }

    /// Deletes every object of a namespace (the namespace was deleted).
    pub fn delete_namespace(&self, ns: &str) {
        let keys: Vec<(Kind, String, String)> = self
            .state
            .lock()
            .unwrap()
            .objects
            .keys()
            .filter(|(_, n, _)| n == ns)
            .cloned()
            .collect();
        for (k, n, name) in keys {
            self.delete(k, &n, &name);
        }
        self.delete(Kind::Namespace, "", ns);
    }

    /// Ends every open watch (as an API server restart or a load balancer
    /// timeout would).
    pub fn drop_watches(&self) {
        let _ = self.events.send(None);
    }

    /// Forgets the history: watches resuming from before now get 410 Gone.
    pub fn compact(&self) {
        let mut s = self.state.lock().unwrap();
        s.compacted = s.rv;
        s.history.clear();
    }

    /// Every (path, is a watch) requested so far.
    pub fn requests(&self) -> std::collections::BTreeSet<(String, bool)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// List requests served so far, each page one.
    pub fn lists(&self) -> usize {
        self.state.lock().unwrap().lists
    }

    /// Unreachable (connections closed at once) or back.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
        if down {
            self.drop_watches();
        }
    }
}

/// A continue token: the list's resourceVersion and the key of the last
/// object served (the next page's first is the one after it), in hex, so
/// the token needs no URL escaping.
fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    format!("{rv}-{}-{}", hex(ns), hex(name))
}

fn decode_continue(token: &str) -> Option<(u64, (String, String))> {
    let unhex = |s: &str| -> Option<String> {
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        String::from_utf8(bytes).ok()
    };
    let mut parts = token.split('-');
    let rv = parts.next()?.parse().ok()?;
    Some((rv, (unhex(parts.next()?)?, unhex(parts.next()?)?)))
}

fn key(kind: Kind, obj: &Value) -> (Kind, String, String) {
    let m = &obj["metadata"];
    (
        kind,
        m["namespace"].as_str().unwrap_or("").into(),
        m["name"].as_str().unwrap_or("").into(),
    )
}

async fn serve(
    mut conn: TcpStream,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Option<Event>>,
) -> std::io::Result<()> {
    // One request per connection (we answer with Connection: close).
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&req).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let is_watch = params.get("watch") == Some(&"true") || params.get("watch") == Some(&"1");
    state
        .lock()
        .unwrap()
        .requests
        .insert((path.to_string(), is_watch));
    // Cluster-wide or namespaced collections; field and label selectors
    // of the `a=b,c=d` form (what kube-rs sends for `fields`/`labels`).
    let (kind, namespace) = match route(path) {
        Some(r) => r,
        None => {
            let body = json!({"kind":"Status","apiVersion":"v1","status":"Failure","code":404,"reason":"NotFound","message":path}).to_string();
            let resp = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(resp.as_bytes()).await?;
            return Ok(());
        }
    };
    let filter = Filter {
        namespace,
        fields: selector(params.get("fieldSelector").copied()),
        labels: selector(params.get("labelSelector").copied()),
    };
    if params.get("watch") != Some(&"true") && params.get("watch") != Some(&"1") {
        // Pages of `limit` objects in key order, as the API server serves
        // them (kube-rs asks for 500): the continue token carries the list's
        // resourceVersion and the last key. Later pages come from the
        // current objects rather than a snapshot, which a watch from the
        // list's version reconciles: anything changed since is also an
        // event after it.
        let limit: Option<usize> = params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|&l| l > 0);
        let after = params.get("continue").and_then(|c| decode_continue(c));
        let (items, rv, next) = {
            let mut s = state.lock().unwrap();
            s.lists += 1;
            let rv = after.as_ref().map_or(s.rv, |(rv, _)| *rv);
            let mut items: Vec<Arc<str>> = Vec::new();
            let mut next = None;
            let start = match &after {
                Some((_, key)) => std::ops::Bound::Excluded((kind, key.0.clone(), key.1.clone())),
                None => std::ops::Bound::Included((kind, String::new(), String::new())),
            };
            let mut last: Option<(&str, &str)> = None;
            for ((k, ns, name), (obj, text)) in s.objects.range((start, std::ops::Bound::Unbounded))
            {
                if *k != kind {
                    break;
                }
                if !filter.matches(obj) {
                    continue;
                }
                if let (Some(l), Some((ns, name))) = (limit, last)
                    && items.len() == l
                {
                    next = Some(encode_continue(rv, ns, name));
                    break;
                }
                items.push(text.clone());
                last = Some((ns, name));
            }
            (items, rv, next)
        };
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if let Some(next) = next {
            meta["continue"] = json!(next);
        }
        let head = json!({
            "apiVersion": kind.api_version(),
            "kind": kind.list_kind(),
            "metadata": meta,
        })
        .to_string();
        // `{...head fields...,"items":[a,b,...]}`
        let mut body = String::with_capacity(
            head.len() + 16 + items.iter().map(|i| i.len() + 1).sum::<usize>(),
        );
        body.push_str(&head[..head.len() - 1]);
        body.push_str(",\"items\":[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(item);
        }
        body.push_str("]}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        return Ok(());
    }
    let from: u64 = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Subscribe before reading history so nothing falls in between.
    let mut rx = events.subscribe();
    conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let (backlog, gone, mut sent) = {
        let s = state.lock().unwrap();
        let gone = from < s.compacted;
        let backlog: Vec<Event> = s
            .history
            .iter()
            .filter(|e| e.kind == kind && e.rv > from && filter.matches(&e.object))
            .cloned()
            .collect();
        (backlog, gone, from)
    };
    if gone {
        let line = json!({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version","reason":"Expired","code":410}});
        chunk(&mut conn, &line).await?;
        conn.write_all(b"0\r\n\r\n").await?;
        return Ok(());
    }
    for e in backlog {
        sent = e.rv;
        chunk(&mut conn, &json!({"type": e.typ, "object": e.object})).await?;
    }
    if params.get("allowWatchBookmarks") == Some(&"true") {
        let rv = state.lock().unwrap().rv;
        let bookmark = json!({"type":"BOOKMARK","object":{"apiVersion": kind.api_version(), "kind": if kind == Kind::Service {"Service"} else {"EndpointSlice"}, "metadata":{"resourceVersion": rv.to_string()}}});
        chunk(&mut conn, &bookmark).await?;
    }
    loop {
        match rx.recv().await {
            Ok(Some(e)) if e.kind == kind && e.rv > sent && filter.matches(&e.object) => {
                sent = e.rv;
                chunk(&mut conn, &json!({"type": e.typ, "object": e.object})).await?;
            }
            Ok(Some(_)) => {}
            // Dropped: end the stream without the final chunk, as a broken
            // connection would.
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

/// `/api/v1/services`, `/api/v1/namespaces/NS/services` and the same for
/// EndpointSlices.
fn route(path: &str) -> Option<(Kind, Option<String>)> {
    let (prefix, rest) = if let Some(r) = path.strip_prefix("/api/v1/") {
        ("core", r)
    } else {
        (
            "discovery",
            path.strip_prefix("/apis/discovery.k8s.io/v1/")?,
        )
    };
    let (ns, coll) = match rest.strip_prefix("namespaces/") {
        Some(r) => {
            let (ns, coll) = r.split_once('/')?;
            (Some(ns.to_string()), coll)
        }
        None => (None, rest),
    };
    let kind = match (prefix, coll) {
        ("core", "services") => Kind::Service,
        ("discovery", "endpointslices") => Kind::EndpointSlice,
        // Namespaces are cluster-scoped: never below `namespaces/<ns>/`.
        ("core", "namespaces") if ns.is_none() => Kind::Namespace,
        ("core", "pods") => Kind::Pod,
        _ => return None,
    };
    Some((kind, ns))
}

/// Percent-decodes a query parameter (selectors arrive encoded).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn selector(raw: Option<&str>) -> Vec<(String, String)> {
    let Some(raw) = raw else { return vec![] };
    unescape(raw)
        .split(',')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim_end_matches('=').to_string(), v.to_string()))
        .collect()
}

/// Which objects a request sees.
struct Filter {
    namespace: Option<String>,
    /// Only `metadata.name` and `metadata.namespace` are supported.
    fields: Vec<(String, String)>,
    labels: Vec<(String, String)>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        let m = &obj["metadata"];
        if let Some(ns) = &self.namespace
            && m["namespace"].as_str() != Some(ns)
        {
            return false;
        }
        self.fields.iter().all(|(k, v)| {
            let field = k.strip_prefix("metadata.").unwrap_or(k);
            m[field].as_str() == Some(v)
        }) && self
            .labels
            .iter()
            .all(|(k, v)| m["labels"][k].as_str() == Some(v))
    }
}

async fn chunk(conn: &mut TcpStream, v: &Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    conn.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
        .await
}
