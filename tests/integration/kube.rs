//! Pod metadata from the (fake) Kubernetes API server: enrichment end to end.

use kubeship_tests::{
    Agent, AgentConfig, Delivery, FakeApi, Format, KubeResource, Node, Pod, secs,
};

/// Records of a pod the API server knows carry its metadata, joined by the pod UID of the
/// log's directory.
#[test]
fn records_carry_pod_metadata() {
    let node = Node::new();
    let api = FakeApi::start("node-1");
    api.write_kubeconfig(&node.root().join("kubeconfig"));
    let mut c = node.add_container("shop", "web-5f6b7-x2x9z", "nginx", Format::Cri);
    let pod = Pod::new("shop", "web-5f6b7-x2x9z")
        .uid(&c.info().pod_uid)
        .node("node-1")
        .ip("10.0.3.17")
        .label("app", "web")
        .label("pod-template-hash", "5f6b7")
        .annotation("team.io/owner", "payments")
        .annotation("not.kept/x", "1")
        .owner("ReplicaSet", "web-5f6b7")
        .running_container("nginx", "nginx:1.27");
    api.upsert_pod(&pod);
    c.write_lines(5);
    let cfg = AgentConfig {
        kubernetes: Some(vec![
            "kubeconfig: ./kubeconfig".into(),
            "annotations: [\"team.io/*\"]".into(),
        ]),
        ..AgentConfig::default()
    };
    let mut agent = Agent::start(&node, &cfg);
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("nginx", 5)], secs(30));
    api.wait_for_watch(KubeResource::Pods, secs(10));
    let out = std::fs::read_to_string(
        node.out_dir()
            .join("aws/containerinsights/test/application/web-5f6b7-x2x9z_shop_nginx.jsonl"),
    )
    .expect("sink file");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON record");
        let k = &v["kubernetes"];
        assert_eq!(k["pod_ip"], "10.0.3.17", "{line}");
        assert_eq!(k["labels"]["app"], "web", "{line}");
        assert_eq!(
            k["annotations"],
            serde_json::json!({"team.io/owner": "payments"})
        );
        assert_eq!(k["workload_kind"], "Deployment", "{line}");
        assert_eq!(k["workload_name"], "web", "{line}");
        assert_eq!(k["container_image"], "nginx:1.27", "{line}");
        assert!(
            k["container_hash"].as_str().unwrap().contains("sha256:"),
            "{line}"
        );
        assert_eq!(k["pod_id"], c.info().pod_uid.as_str(), "{line}");
    }
    let r = api.requests();
    assert_eq!((r.pods_list, r.pods_watch), (1, 1), "{}", api.summary());
    api.assert_no_unexpected();
    agent.sigterm();
    assert!(agent.wait_exit(secs(30)).success());
}
