package dev.weir.bench;

import java.time.Duration;
import java.util.Locale;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import java.util.function.Function;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.kstream.WindowedSerdes;

/**
 * One topology of benches/scripts/streams.py on Kafka Streams; benches/src/bin/streams_bench.rs
 * is the same program on weir-streams. Keys and values are UTF-8 strings, counts 8-byte longs.
 *
 * <pre>
 * java -cp 'target/streams-bench.jar:target/lib/*' dev.weir.bench.StreamsBench \
 *     TOPOLOGY BOOTSTRAP APPLICATION_ID INPUT OUTPUT [--table TOPIC] [--grace-ms N] [--state-dir DIR]
 *         [--guarantee at_least_once|exactly_once_v2]
 * </pre>
 *
 * TOPOLOGY: stateless (drop values starting with '-', upper-case the rest), windowed-count
 * (count per key in 10 s tumbling windows with the grace given), windowed-final (the same,
 * each window's final count only, suppressed until it closes), stream-table-join (inner join
 * with the table read from --table, value "stream|table"), session (count per key in sessions
 * with a 5 s gap and the grace given), count (count per key, no windows), fk-join (INPUT read
 * as a table of orders whose value is "customer|detail", joined by foreign key with the
 * customers table of --table: inner results keyed "inner:ORDER", left ones "left:ORDER", value
 * "order/customer", "?" for a missing customer), partitioned (stateless, written with a
 * StreamPartitioner: key k0 to every partition, k1 by the default partitioner, k2 to none,
 * others to the value's length modulo the partition count), table-group-by (INPUT read as a
 * table of users whose value is "region|detail", counted per region). Runs until killed
 * (SIGTERM closes it).
 */
public final class StreamsBench {
    private StreamsBench() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 5) {
            System.err.println("usage: StreamsBench TOPOLOGY BOOTSTRAP APPLICATION_ID INPUT OUTPUT"
                    + " [--table TOPIC] [--grace-ms N] [--state-dir DIR]");
            System.exit(2);
        }
        String topology = args[0];
        String input = args[3];
        String output = args[4];
        String table = null;
        long graceMs = 0;
        String stateDir = System.getProperty("java.io.tmpdir") + "/streams-bench-" + args[2];
        String guarantee = StreamsConfig.AT_LEAST_ONCE;
        for (int i = 5; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--table" -> table = args[i + 1];
                case "--grace-ms" -> graceMs = Long.parseLong(args[i + 1]);
                case "--state-dir" -> stateDir = args[i + 1];
                case "--guarantee" -> guarantee = args[i + 1];
                default -> {
                    System.err.println("unknown option " + args[i]);
                    System.exit(2);
                }
            }
        }

        Serde<String> strings = Serdes.String();
        Serde<Long> longs = Serdes.Long();
        Duration grace = Duration.ofMillis(graceMs);
        StreamsBuilder builder = new StreamsBuilder();
        if (topology.equals("fk-join")) {
            if (table == null) {
                System.err.println("fk-join needs --table TOPIC");
                System.exit(2);
            }
            KTable<String, String> orders = builder.table(input, Consumed.with(strings, strings));
            KTable<String, String> customers = builder.table(table, Consumed.with(strings, strings));
            // No customer before the bar: a null foreign key.
            Function<String, String> customerOf = order -> {
                String customer = order.split("\\|", -1)[0];
                return customer.isEmpty() ? null : customer;
            };
            orders.join(customers, customerOf, (order, customer) -> order + "/" + customer)
                    .toStream()
                    .selectKey((key, value) -> "inner:" + key)
                    .to(output, Produced.with(strings, strings));
            orders.leftJoin(customers, customerOf,
                            (order, customer) -> order + "/" + (customer == null ? "?" : customer))
                    .toStream()
                    .selectKey((key, value) -> "left:" + key)
                    .to(output, Produced.with(strings, strings));
        }
        if (topology.equals("table-group-by")) {
            // Users ("region|detail") counted per region; a null value deletes the user.
            builder.table(input, Consumed.with(strings, strings))
                    .groupBy((user, value) -> KeyValue.pair(value.split("\\|", -1)[0], value),
                             Grouped.with(strings, strings))
                    .count()
                    .toStream()
                    .to(output, Produced.with(strings, longs));
        }
        boolean tables = topology.equals("fk-join") || topology.equals("table-group-by");
        KStream<String, String> stream = tables
                ? null
                : builder.stream(input, Consumed.with(strings, strings));
        switch (topology) {
            case "fk-join", "table-group-by" -> { }
            case "stateless" -> stream
                    .filter((k, v) -> v != null && !v.startsWith("-"))
                    .mapValues(v -> v.toUpperCase(Locale.ROOT))
                    .to(output, Produced.with(strings, strings));
            case "partitioned" -> stream
                    .filter((k, v) -> v != null && !v.startsWith("-"))
                    .mapValues(v -> v.toUpperCase(Locale.ROOT))
                    .to(output, Produced.with(strings, strings).withStreamPartitioner(
                            (topic, key, value, partitions) -> switch (key) {
                                case "k0" -> Optional.of(IntStream.range(0, partitions).boxed()
                                        .collect(Collectors.toSet()));
                                case "k1" -> Optional.empty();
                                case "k2" -> Optional.of(Set.of());
                                default -> Optional.of(Set.of(value.length() % partitions));
                            }));
            case "windowed-count" -> stream
                    .groupByKey()
                    .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(10), grace))
                    .count()
                    .toStream()
                    .to(output, Produced.with(
                            WindowedSerdes.timeWindowedSerdeFrom(String.class, 10_000L), longs));
            case "windowed-final" -> stream
                    .groupByKey()
                    .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(10), grace))
                    .count()
                    .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                    .toStream()
                    .to(output, Produced.with(
                            WindowedSerdes.timeWindowedSerdeFrom(String.class, 10_000L), longs));
            case "stream-table-join" -> {
                if (table == null) {
                    System.err.println("stream-table-join needs --table TOPIC");
                    System.exit(2);
                }
                KTable<String, String> t = builder.table(table, Consumed.with(strings, strings));
                stream.join(t, (v, tv) -> v + "|" + tv).to(output, Produced.with(strings, strings));
            }
            case "session" -> {
                KStream<Windowed<String>, Long> counts = stream
                        .groupByKey()
                        .windowedBy(SessionWindows.ofInactivityGapAndGrace(Duration.ofSeconds(5), grace))
                        .count()
                        .toStream();
                counts.to(output, Produced.with(WindowedSerdes.sessionWindowedSerdeFrom(String.class), longs));
            }
            case "count" -> stream
                    .groupByKey()
                    .count()
                    .toStream()
                    .to(output, Produced.with(strings, longs));
            default -> {
                System.err.println("unknown topology " + topology);
                System.exit(2);
            }
        }

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[2]);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        // Every update is forwarded, as weir-streams does (it has no record cache).
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        // One broker: internal topics (changelogs) with one replica.
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        // Kafka Streams does not leave the group when it closes: the compare's handover waits
        // for the member's session to expire before the next application joins.
        props.put(StreamsConfig.consumerPrefix("session.timeout.ms"), 6000);
        // weir-client's producer default (Kafka Streams' own default is 100 ms).
        props.put(StreamsConfig.producerPrefix("linger.ms"), 5);

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(10));
            stopped.countDown();
        }));
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("stream thread failed: " + e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                    .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();
        System.err.println("started " + topology);
        stopped.await();
    }
}
