//! Administrative operations: topics, partitions, configs, groups, offsets and records.
