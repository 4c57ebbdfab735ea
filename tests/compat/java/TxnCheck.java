// The Java client (kafka-clients) against Weir: topics through the Admin client, a
// transactional producer that commits one transaction and aborts another, a read_committed
// consumer that reads only the committed one, consume-transform-produce with
// sendOffsetsToTransaction, fencing of a zombie producer, and the admin views of transactions
// (describeProducers, describeTransactions, listTransactions).
//
//   java -cp 'tests/compat/java/target/lib/*' tests/compat/java/TxnCheck.java localhost:9092
//
// Exits 0 when every step passes; prints the failing step and exits 1 otherwise.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnCheck {
    static String bootstrap;
    static final String RUN = UUID.randomUUID().toString().substring(0, 8);
    static final String INPUT = "java-txn-in-" + RUN;
    static final String OUTPUT = "java-txn-out-" + RUN;

    static void check(boolean ok, String what) {
        if (!ok) {
            System.out.println("FAIL: " + what);
            System.exit(1);
        }
        System.out.println("ok: " + what);
    }

    static KafkaProducer<String, String> producer(String transactionalId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4");
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(String group) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return new KafkaConsumer<>(c);
    }

    /** Reads `topic` read_committed from the beginning until `expected` values or 30 s. */
    static List<String> readAll(String topic, int expected) {
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer("java-reader-" + UUID.randomUUID())) {
            c.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 30_000;
            long quietUntil = 0;
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    values.add(r.value());
                }
                // Once enough arrived, wait 2 s more: an aborted record would show up by then.
                if (values.size() >= expected) {
                    if (quietUntil == 0) quietUntil = System.currentTimeMillis() + 2_000;
                    if (System.currentTimeMillis() > quietUntil) break;
                }
            }
        }
        return values;
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args.length > 0 ? args[0] : "localhost:9092";
        Properties a = new Properties();
        a.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(a)) {
            admin.createTopics(List.of(new NewTopic(INPUT, 3, (short) 1), new NewTopic(OUTPUT, 3, (short) 1)))
                    .all().get(30, TimeUnit.SECONDS);
            check(true, "createTopics " + INPUT + ", " + OUTPUT);

            String txId = "java-tx-" + RUN;
            KafkaProducer<String, String> p = producer(txId);
            p.initTransactions();
            check(true, "initTransactions");
            p.beginTransaction();
            for (int i = 0; i < 10; i++) p.send(new ProducerRecord<>(INPUT, "k" + i, "committed-" + i));
            p.commitTransaction();
            p.beginTransaction();
            for (int i = 0; i < 5; i++) p.send(new ProducerRecord<>(INPUT, "k" + i, "aborted-" + i));
            p.flush();
            p.abortTransaction();
            check(true, "a transaction committed, another aborted");

            List<String> read = readAll(INPUT, 10);
            check(read.size() == 10 && read.stream().allMatch(v -> v.startsWith("committed-")),
                    "read_committed reads the 10 committed records only: " + read);

            // describeProducers on the input's leaders: the transactional producer is there.
            List<TopicPartition> inputs = List.of(new TopicPartition(INPUT, 0), new TopicPartition(INPUT, 1),
                    new TopicPartition(INPUT, 2));
            Map<TopicPartition, org.apache.kafka.clients.admin.DescribeProducersResult.PartitionProducerState>
                    producers = admin.describeProducers(inputs).all().get(30, TimeUnit.SECONDS);
            long withProducer = producers.values().stream()
                    .filter(s -> !s.activeProducers().isEmpty()).count();
            List<ProducerState> open = producers.values().stream()
                    .flatMap(s -> s.activeProducers().stream())
                    .filter(s -> s.currentTransactionStartOffset().isPresent()).collect(Collectors.toList());
            check(withProducer > 0 && open.isEmpty(),
                    "describeProducers: producers on " + withProducer + " partitions, no open transaction: "
                            + producers);

            TransactionDescription described = admin.describeTransactions(List.of(txId))
                    .description(txId).get(30, TimeUnit.SECONDS);
            check(described.state() == org.apache.kafka.clients.admin.TransactionState.COMPLETE_ABORT,
                    "describeTransactions: " + described.state());
            // The broker's finalized transaction.version (describeFeatures reads ApiVersions):
            // at 2 (KIP-890 part 2) every EndTxn bumps the epoch, so after a commit and an
            // abort the producer is at epoch 2; with the classic protocol it stays at 0.
            var finalized = admin.describeFeatures().featureMetadata().get(30, TimeUnit.SECONDS)
                    .finalizedFeatures().get("transaction.version");
            boolean tv2 = finalized != null && finalized.maxVersionLevel() >= 2;
            check(described.producerEpoch() == (tv2 ? 2 : 0),
                    "transaction.version " + (finalized == null ? 0 : finalized.maxVersionLevel())
                            + ": producer epoch " + described.producerEpoch() + " after two transactions");
            Collection<TransactionListing> listed = admin.listTransactions().all().get(30, TimeUnit.SECONDS);
            check(listed.stream().anyMatch(l -> l.transactionalId().equals(txId)),
                    "listTransactions includes " + txId);

            // consume-transform-produce: offsets committed in the transaction.
            String group = "java-ctp-" + RUN;
            try (KafkaConsumer<String, String> c = consumer(group)) {
                c.subscribe(List.of(INPUT));
                int transformed = 0;
                long deadline = System.currentTimeMillis() + 30_000;
                while (transformed < 10 && System.currentTimeMillis() < deadline) {
                    var records = c.poll(Duration.ofMillis(200));
                    if (records.isEmpty()) continue;
                    p.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                    for (ConsumerRecord<String, String> r : records) {
                        p.send(new ProducerRecord<>(OUTPUT, r.key(), r.value().toUpperCase()));
                        offsets.put(new TopicPartition(r.topic(), r.partition()),
                                new OffsetAndMetadata(r.offset() + 1));
                        transformed++;
                    }
                    p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                    p.commitTransaction();
                }
                check(transformed == 10, "consume-transform-produce transformed " + transformed);
                Set<TopicPartition> assigned = c.assignment();
                Map<TopicPartition, OffsetAndMetadata> committed = c.committed(assigned);
                long total = 0;
                for (OffsetAndMetadata o : committed.values()) if (o != null) total += o.offset();
                // Each partition's committed offset counts its 10/3 records plus the control
                // batches before them (one per transaction that touched it).
                check(total >= 10, "the group committed offsets through the transaction: " + committed);
            }
            List<String> out = readAll(OUTPUT, 10);
            check(out.size() == 10 && out.stream().allMatch(v -> v.startsWith("COMMITTED-")),
                    "the output holds the 10 transformed records: " + out);

            // A second producer with the same transactional id fences the first.
            KafkaProducer<String, String> zombieSlayer = producer(txId);
            zombieSlayer.initTransactions();
            boolean fenced = false;
            try {
                p.beginTransaction();
                p.send(new ProducerRecord<>(INPUT, "z", "zombie")).get(30, TimeUnit.SECONDS);
                p.commitTransaction();
            } catch (ProducerFencedException e) {
                fenced = true;
            } catch (java.util.concurrent.ExecutionException e) {
                fenced = e.getCause() instanceof ProducerFencedException
                        || e.getCause() instanceof org.apache.kafka.common.errors.InvalidProducerEpochException;
            } catch (org.apache.kafka.common.KafkaException e) {
                fenced = e.getCause() instanceof ProducerFencedException
                        || e instanceof org.apache.kafka.common.errors.InvalidProducerEpochException;
            }
            check(fenced, "the older producer of " + txId + " is fenced");
            p.close(Duration.ofSeconds(5));
            zombieSlayer.beginTransaction();
            zombieSlayer.send(new ProducerRecord<>(INPUT, "n", "new-producer"));
            zombieSlayer.commitTransaction();
            zombieSlayer.close(Duration.ofSeconds(5));
            List<String> after = readAll(INPUT, 11);
            check(after.size() == 11 && after.contains("new-producer") && !after.contains("zombie"),
                    "the new producer's record is read, the zombie's is not");
        }
        System.out.println("java transactions: all checks passed");
    }
}
