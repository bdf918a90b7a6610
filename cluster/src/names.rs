//! RabbitMQ names of a cluster (DESIGN.md, "Names in Redis and RabbitMQ"):
//! one direct exchange `chat.C`, and per node a queue `chat.C.P` bound with
//! routing key `P`.

/// The cluster's exchange.
pub fn exchange_name(cluster: &str) -> String {
    format!("chat.{cluster}")
}

/// The queue of the node on `port`.
pub fn queue_name(cluster: &str, port: u16) -> String {
    format!("chat.{cluster}.{port}")
}

/// The routing key that reaches the node on `port`.
pub fn routing_key(port: u16) -> String {
    port.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        assert_eq!(exchange_name("prod"), "chat.prod");
        assert_eq!(queue_name("prod", 8760), "chat.prod.8760");
        assert_eq!(routing_key(8760), "8760");
    }
}
