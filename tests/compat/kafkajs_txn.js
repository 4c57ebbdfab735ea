// kafkajs transactions against a running Weir broker: a transactional producer commits one
// transaction and aborts another, and a read_committed consumer group reads exactly the
// committed records; offsets sent to a transaction (sendOffsets) are the group's committed
// offsets once it commits. Usage: node tests/compat/kafkajs_txn.js [host:port]
// Needs `npm install kafkajs` (NODE_PATH may point at its node_modules). Exits 1 on failure.
const { Kafka, logLevel } = require('kafkajs');

const broker = process.argv[2] || 'localhost:9092';
const run = Math.random().toString(16).slice(2, 10);
const topic = `kjs-txn-${run}`;
const group = `kjs-txn-group-${run}`;
const offsetsGroup = `kjs-txn-offsets-${run}`;

async function main() {
  const kafka = new Kafka({ clientId: 'weir-compat-txn', brokers: [broker], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] });

  const producer = kafka.producer({
    transactionalId: `kjs-tx-${run}`, idempotent: true, maxInFlightRequests: 1,
  });
  await producer.connect();
  let txn = await producer.transaction();
  await txn.send({ topic, messages: [{ value: 'c0' }, { value: 'c1' }, { value: 'c2' }] });
  await txn.commit();
  txn = await producer.transaction();
  await txn.send({ topic, messages: [{ value: 'a0' }, { value: 'a1' }] });
  await txn.abort();
  txn = await producer.transaction();
  await txn.send({ topic, messages: [{ value: 'c3' }] });
  await txn.sendOffsets({
    consumerGroupId: offsetsGroup,
    topics: [{ topic, partitions: [{ partition: 0, offset: '7' }] }],
  });
  await txn.commit();
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: group, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(), 8000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.push(message.value.toString());
        if (seen.length > 4) {
          clearTimeout(timer);
          reject(new Error(`read more than the committed records: ${seen}`));
        }
      },
    });
  });
  await consumer.disconnect();
  seen.sort();
  if (JSON.stringify(seen) !== JSON.stringify(['c0', 'c1', 'c2', 'c3'])) {
    throw new Error(`read_committed read ${seen}`);
  }
  console.log(`kafkajs txn: read_committed ${seen}`);

  let committed;
  for (let i = 0; i < 50; i++) {
    const offsets = await admin.fetchOffsets({ groupId: offsetsGroup, topics: [topic] });
    committed = offsets[0].partitions[0].offset;
    if (committed === '7') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (committed !== '7') throw new Error(`offsets group committed ${committed}`);
  console.log(`kafkajs txn: sendOffsets committed ${committed}`);
  await admin.disconnect();
  console.log('kafkajs txn: PASS');
}

main().catch((e) => {
  console.error(e);
  console.log('kafkajs txn: FAIL');
  process.exit(1);
});
