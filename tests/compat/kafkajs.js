// kafkajs against a running Weir broker: produce with keys and headers, then a consumer group
// reads everything back and commits. Usage: node tests/compat/kafkajs.js [host:port]
// Needs `npm install kafkajs` (NODE_PATH may point at its node_modules). Exits 1 on failure.
const { Kafka, logLevel } = require('kafkajs');

const broker = process.argv[2] || 'localhost:9092';
const run = Math.random().toString(16).slice(2, 10);
const topic = `kjs-${run}`;
const group = `kjs-group-${run}`;
const count = 20;

async function main() {
  const kafka = new Kafka({ clientId: 'weir-compat', brokers: [broker], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) {
    messages.push({ key: `k${i % 4}`, value: `v${i}`, headers: { n: `${i}` } });
  }
  await producer.send({ topic, messages, acks: -1 });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: group });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen.size} of ${count} records`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        if (message.headers.n.toString() !== message.value.toString().slice(1)) {
          reject(new Error(`header mismatch on ${message.value}`));
        }
        seen.add(message.value.toString());
        if (seen.size === count) {
          clearTimeout(timer);
          resolve();
        }
      },
    }).catch(reject);
  });
  await consumer.disconnect();

  const admin2 = kafka.admin();
  await admin2.connect();
  const offsets = await admin2.fetchOffsets({ groupId: group, topics: [topic] });
  const committed = offsets[0].partitions.reduce((sum, p) => sum + Number(p.offset), 0);
  await admin2.deleteTopics({ topics: [topic] });
  await admin2.disconnect();
  if (committed !== count) {
    throw new Error(`committed offsets add up to ${committed}, expected ${count}`);
  }
  console.log(`kafkajs: PASS (${count} records produced idempotently and consumed in a group, offsets committed)`);
}

main().catch((e) => {
  console.log(`kafkajs: FAIL ${e.stack || e}`);
  process.exit(1);
});
