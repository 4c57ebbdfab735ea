// kafkajs against a running Weir broker: the advertised broker address and DescribeConfigs
// without synonyms (issue 15), then produce with keys and headers, and a consumer group reads
// everything back and commits. Usage: node tests/compat/kafkajs.js [host:port]
// Needs `npm install kafkajs` (NODE_PATH may point at its node_modules). Exits 1 on failure.
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs');

const broker = process.argv[2] || 'localhost:9092';
const run = Math.random().toString(16).slice(2, 10);
const topic = `kjs-${run}`;
const group = `kjs-group-${run}`;
const count = 20;

async function main() {
  const kafka = new Kafka({ clientId: 'weir-compat', brokers: [broker], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic, numPartitions: 2, configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
  });
  await checkAdvertisedAddress(admin);
  await checkSynonyms(admin);
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
  console.log(`kafkajs: PASS (advertised address as configured, no unrequested config synonyms, ${count} records produced idempotently and consumed in a group, offsets committed)`);
}

// The broker is advertised exactly as its own `advertised.listeners` (else `listeners`) names
// it, as Kafka does: `localhost` must not come back as 127.0.0.1.
async function checkAdvertisedAddress(admin) {
  const cluster = await admin.describeCluster();
  const node = cluster.brokers[0];
  const described = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.BROKER, name: `${node.nodeId}` }],
    includeSynonyms: false,
  });
  const value = name => {
    const entry = described.resources[0].configEntries.find(e => e.configName === name);
    return entry ? entry.configValue : undefined;
  };
  const listener = (value('advertised.listeners') || value('listeners') || '').split(',')[0].trim();
  const parsed = /^(?:[A-Za-z_]+:\/\/)?\[?([^\]]*?)\]?:(\d+)$/.exec(listener);
  if (!parsed) {
    throw new Error(`cannot read the broker's listener from ${JSON.stringify(listener)}`);
  }
  const [, host, port] = parsed;
  // An empty host advertises the machine's host name, which this script cannot know.
  if (host !== '' && node.host !== host) {
    throw new Error(`broker advertised as ${node.host}, but its listener says ${listener}`);
  }
  if (Number(port) !== 0 && node.port !== Number(port)) {
    throw new Error(`broker advertised on port ${node.port}, but its listener says ${listener}`);
  }
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  const leader = metadata.topics[0].partitions[0].leader;
  if (leader !== node.nodeId) {
    throw new Error(`partition leader ${leader} is not the described broker ${node.nodeId}`);
  }
}

// DescribeConfigs with includeSynonyms false (kafkajs's default) lists no synonyms; with true,
// the topic override comes with the broker property it overrides.
async function checkSynonyms(admin) {
  const describe = async includeSynonyms => {
    const result = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
      includeSynonyms,
    });
    return result.resources[0].configEntries;
  };
  const plain = await describe(false);
  const retention = plain.find(e => e.configName === 'retention.ms');
  if (!retention || retention.configValue !== '3600000') {
    throw new Error(`retention.ms: ${JSON.stringify(retention)}`);
  }
  const withSynonyms = plain.filter(e => e.configSynonyms.length > 0);
  if (withSynonyms.length > 0) {
    throw new Error(`synonyms not asked for: ${JSON.stringify(withSynonyms[0])}`);
  }
  const full = (await describe(true)).find(e => e.configName === 'retention.ms');
  const names = full.configSynonyms.map(s => s.configName);
  if (!names.includes('retention.ms') || !names.includes('log.retention.ms')) {
    throw new Error(`retention.ms synonyms: ${JSON.stringify(full.configSynonyms)}`);
  }
}

main().catch((e) => {
  console.log(`kafkajs: FAIL ${e.stack || e}`);
  process.exit(1);
});
