//! Prints the ChatCluster CRD as YAML (`crds/chatcluster.yaml` is this output).

fn main() {
    match serde_yaml_ng::to_string(&parley_operator::crd::definition()) {
        Ok(yaml) => print!("{yaml}"),
        Err(e) => {
            eprintln!("crdgen: {e}");
            std::process::exit(1);
        }
    }
}
