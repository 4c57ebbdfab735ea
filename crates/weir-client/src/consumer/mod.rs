//! The consumer: groups (classic protocol) or assigned partitions, records as a stream.
