//! One pipelined connection to one broker: framing, correlation ids, API versions.
