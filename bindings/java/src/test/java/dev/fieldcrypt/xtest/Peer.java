package dev.fieldcrypt.xtest;

import dev.fieldcrypt.Codec;
import dev.fieldcrypt.FieldcryptException;
import dev.fieldcrypt.Header;
import dev.fieldcrypt.Json;
import dev.fieldcrypt.Record;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The Java peer of the produce/consume matrix (xtests/README.md, "The matrix"): kafka-clients'
 * {@code KafkaProducer} / {@code KafkaConsumer} with byte-array serdes, and the {@link Codec} on
 * whole records (key, value and headers in one call).
 *
 * <pre>
 * Peer produce --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX
 * Peer consume --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX --group GROUP --out OUT.json
 * </pre>
 *
 * Exit 0 on success; 1 with a message on stderr on any failure (bad arguments included).
 */
public final class Peer {
    /** The formats, in the order they are produced. */
    static final List<String> FORMATS = List.of("json", "avro", "protobuf", "json_schema");
    static final Duration CONSUME_TIMEOUT = Duration.ofSeconds(60);
    static final long SEND_TIMEOUT_S = 60;
    static final String QUIET = "org.slf4j.simpleLogger.log.org.apache.kafka.clients.NetworkClient";

    private Peer() {}

    /** A failure to report: its message goes to stderr, and the peer exits 1. */
    static final class Failure extends Exception {
        private static final long serialVersionUID = 1L;

        Failure(String message) {
            super(message);
        }
    }

    /** The parsed SPEC.json. */
    record Spec(String policy, String producerConfig, String consumerConfig, Map<String, List<Record>> formats) {}

    public static void main(String[] args) {
        // Before Kafka's first logger: not one warning per metadata refresh while a topic is missing.
        if (System.getProperty(QUIET) == null) {
            System.setProperty(QUIET, "error");
        }
        int status;
        try {
            run(args);
            status = 0;
        } catch (IllegalArgumentException e) {
            System.err.println("peer-java: " + e.getMessage());
            System.err.println("usage: Peer produce --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX\n"
                    + "       Peer consume --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX"
                    + " --group GROUP --out OUT.json");
            status = 1;
        } catch (Failure e) {
            System.err.println("peer-java: " + e.getMessage());
            status = 1;
        } catch (FieldcryptException e) {
            System.err.println("peer-java: " + e);
            status = 1;
        } catch (Exception e) {
            System.err.println("peer-java: " + e);
            e.printStackTrace();
            status = 1;
        }
        // Kafka's client threads must not keep the JVM alive.
        System.exit(status);
    }

    static void run(String[] args) throws Exception {
        if (args.length == 0) {
            throw new IllegalArgumentException("no command");
        }
        String command = args[0];
        List<String> allowed = switch (command) {
            case "produce" -> List.of("--bootstrap", "--spec", "--topic-prefix");
            case "consume" -> List.of("--bootstrap", "--spec", "--topic-prefix", "--group", "--out");
            default -> throw new IllegalArgumentException("unknown command " + command);
        };
        Map<String, String> opts = new LinkedHashMap<>();
        for (int i = 1; i < args.length; i += 2) {
            if (!allowed.contains(args[i])) {
                throw new IllegalArgumentException("unknown option " + args[i] + " for " + command);
            }
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException(args[i] + " needs a value");
            }
            if (opts.put(args[i], args[i + 1]) != null) {
                throw new IllegalArgumentException(args[i] + " given twice");
            }
        }
        for (String o : allowed) {
            if (!opts.containsKey(o)) {
                throw new IllegalArgumentException(command + " needs " + o);
            }
        }
        Spec spec = readSpec(Path.of(opts.get("--spec")));
        String bootstrap = opts.get("--bootstrap");
        String prefix = opts.get("--topic-prefix");
        if (command.equals("produce")) {
            produce(bootstrap, spec, prefix);
        } else {
            consume(bootstrap, spec, prefix, opts.get("--group"), Path.of(opts.get("--out")));
        }
    }

    static Spec readSpec(Path path) throws Failure {
        Map<String, Object> doc;
        try {
            doc = Json.object(Files.readString(path, StandardCharsets.UTF_8));
        } catch (Exception e) {
            throw new Failure("cannot read the spec " + path + ": " + e);
        }
        for (String member : List.of("policy", "producer_config", "consumer_config", "formats")) {
            if (!(doc.get(member) instanceof Map)) {
                throw new Failure("spec " + path + ": \"" + member + "\" is not a JSON object");
            }
        }
        Map<String, List<Record>> formats = new LinkedHashMap<>();
        Map<?, ?> given = (Map<?, ?>) doc.get("formats");
        for (Object name : given.keySet()) {
            if (!FORMATS.contains(name)) {
                throw new Failure("spec " + path + ": unknown format \"" + name + "\" (known: " + FORMATS + ")");
            }
        }
        for (String format : FORMATS) {
            if (!given.containsKey(format)) {
                continue;
            }
            if (!(given.get(format) instanceof List<?> list)) {
                throw new Failure("spec " + path + ": formats." + format + " is not a JSON array");
            }
            List<Record> records = new ArrayList<>();
            for (Object r : list) {
                try {
                    records.add(RecordJson.read(r));
                } catch (IllegalArgumentException e) {
                    throw new Failure("spec " + path + ": formats." + format + "[" + records.size() + "]: "
                            + e.getMessage());
                }
            }
            formats.put(format, records);
        }
        return new Spec(Json.write(doc.get("policy")), Json.write(doc.get("producer_config")),
                Json.write(doc.get("consumer_config")), formats);
    }

    static Codec codec(String policy, String config, String which) throws Failure {
        try {
            return new Codec(policy, config);
        } catch (FieldcryptException e) {
            throw new Failure("a codec of the spec's policy and " + which + ": " + e);
        }
    }

    static String topic(String prefix, String format) {
        return prefix + "-" + format;
    }

    static void produce(String bootstrap, Spec spec, String prefix) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "fieldcrypt-xtest-java-" + prefix);
        try (Codec codec = codec(spec.policy(), spec.producerConfig(), "producer_config");
                KafkaProducer<byte[], byte[]> producer =
                        new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            List<String> what = new ArrayList<>();
            for (Map.Entry<String, List<Record>> e : spec.formats().entrySet()) {
                String topic = topic(prefix, e.getKey());
                List<Record> records = e.getValue();
                for (int i = 0; i < records.size(); i++) {
                    Record sealed;
                    try {
                        sealed = codec.encrypt(topic, records.get(i));
                    } catch (RuntimeException ex) {
                        throw new Failure("encrypt " + topic + " record " + i + ": " + ex);
                    }
                    Headers headers = new RecordHeaders();
                    for (Header h : sealed.headers()) {
                        headers.add(h.name(), h.value());
                    }
                    sent.add(producer.send(new ProducerRecord<>(topic, null, sealed.key(), sealed.value(), headers)));
                    what.add(topic + " record " + i);
                }
            }
            producer.flush();
            for (int i = 0; i < sent.size(); i++) {
                try {
                    sent.get(i).get(SEND_TIMEOUT_S, TimeUnit.SECONDS);
                } catch (Exception ex) {
                    throw new Failure("produce " + what.get(i) + ": " + (ex.getCause() != null ? ex.getCause() : ex));
                }
            }
            System.err.println("peer-java: produced " + sent.size() + " records to " + prefix + "-{"
                    + String.join(",", spec.formats().keySet()) + "}");
        }
    }

    static void consume(String bootstrap, Spec spec, String prefix, String group, Path out) throws Exception {
        Map<String, String> formatOf = new LinkedHashMap<>();
        Map<String, List<ConsumerRecord<byte[], byte[]>>> got = new LinkedHashMap<>();
        for (String format : spec.formats().keySet()) {
            formatOf.put(topic(prefix, format), format);
            got.put(format, new ArrayList<>());
        }
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "fieldcrypt-xtest-java-" + group);
        // A missing topic is the producer's failure: the consumer does not create it.
        props.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
        int extra = 0;
        if (!formatOf.isEmpty()) {
            try (KafkaConsumer<byte[], byte[]> consumer =
                    new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                consumer.subscribe(List.copyOf(formatOf.keySet()));
                long deadline = System.nanoTime() + CONSUME_TIMEOUT.toNanos();
                while (!complete(spec, got) && System.nanoTime() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(250))) {
                        List<ConsumerRecord<byte[], byte[]>> list = got.get(formatOf.get(r.topic()));
                        if (list.size() < spec.formats().get(formatOf.get(r.topic())).size()) {
                            list.add(r);
                        } else {
                            extra++;
                        }
                    }
                }
            }
        }
        if (!complete(spec, got)) {
            StringBuilder counts = new StringBuilder();
            for (String format : got.keySet()) {
                counts.append(' ').append(topic(prefix, format)).append(": ").append(got.get(format).size())
                        .append('/').append(spec.formats().get(format).size());
            }
            throw new Failure("timed out after " + CONSUME_TIMEOUT.toSeconds() + " s; records read:" + counts);
        }
        if (extra > 0) {
            System.err.println("peer-java: ignored " + extra + " records beyond the spec's counts");
        }

        Map<String, Object> formats = new LinkedHashMap<>();
        try (Codec codec = codec(spec.policy(), spec.consumerConfig(), "consumer_config")) {
            for (Map.Entry<String, List<ConsumerRecord<byte[], byte[]>>> e : got.entrySet()) {
                List<Object> records = new ArrayList<>();
                for (ConsumerRecord<byte[], byte[]> r : e.getValue()) {
                    List<Header> headers = new ArrayList<>();
                    for (org.apache.kafka.common.header.Header h : r.headers()) {
                        headers.add(new Header(h.key(), h.value()));
                    }
                    Record raw = new Record(r.key(), r.value(), headers);
                    Record decrypted;
                    try {
                        decrypted = codec.decrypt(r.topic(), raw);
                    } catch (RuntimeException ex) {
                        throw new Failure("decrypt " + r.topic() + " offset " + r.offset() + ": " + ex);
                    }
                    Map<String, Object> pair = new LinkedHashMap<>();
                    pair.put("raw", RecordJson.write(raw));
                    pair.put("decrypted", RecordJson.write(decrypted));
                    records.add(pair);
                }
                formats.put(e.getKey(), records);
            }
        }
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("formats", formats);
        Path abs = out.toAbsolutePath();
        if (abs.getParent() != null) {
            Files.createDirectories(abs.getParent());
        }
        Files.writeString(out, Json.write(doc) + "\n", StandardCharsets.UTF_8);
        int n = got.values().stream().mapToInt(List::size).sum();
        System.err.println("peer-java: consumed and decrypted " + n + " records; wrote " + out);
    }

    static boolean complete(Spec spec, Map<String, List<ConsumerRecord<byte[], byte[]>>> got) {
        for (Map.Entry<String, List<Record>> e : spec.formats().entrySet()) {
            if (got.get(e.getKey()).size() < e.getValue().size()) {
                return false;
            }
        }
        return true;
    }
}
