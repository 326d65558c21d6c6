package dev.fieldcrypt;

import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * A manual benchmark (run-tests.sh bench): µs per call on one thread, for the standard workload
 * (schemas/payment/payment.json, demo policy, topic payments), and an empty native call
 * (fc_version) for JNA's own cost per call. Median of rounds after a warm-up.
 *
 * <p>Args: [seconds per round, default 1] [rounds, default 5].
 */
public final class Bench {
    private static volatile Object sink;

    interface Op {
        Object run();
    }

    public static void main(String[] args) throws Exception {
        double seconds = args.length > 0 ? Double.parseDouble(args[0]) : 1.0;
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 5;
        byte[] payment = Files.readAllBytes(Fixtures.PAYMENT);
        payment = new String(payment, java.nio.charset.StandardCharsets.UTF_8).strip()
                .getBytes(java.nio.charset.StandardCharsets.UTF_8);
        try (Codec codec = Fixtures.codec()) {
            byte[] value = payment;
            Record sealed = codec.encrypt("payments", null, value, null);
            List<Record> plainBatch = Collections.nCopies(100, new Record(null, value, List.of()));
            List<Record> sealedBatch = codec.encryptBatch("payments", plainBatch);
            System.out.printf("fieldcrypt %s, Java %s, payment record %d bytes -> %d bytes + %d-byte header%n",
                    Codec.version(), System.getProperty("java.version"), value.length, sealed.value().length,
                    sealed.headers().get(0).value().length);
            report("empty native call (fc_version)", 1, seconds, rounds, Ffi::fc_version);
            report("encrypt payments", 1, seconds, rounds, () -> codec.encrypt("payments", null, value, null));
            report("decrypt payments", 1, seconds, rounds, () -> codec.decrypt("payments", sealed));
            report("encryptBatch payments, per record (100/call)", 100, seconds, rounds,
                    () -> codec.encryptBatch("payments", plainBatch));
            report("decryptBatch payments, per record (100/call)", 100, seconds, rounds,
                    () -> codec.decryptBatch("payments", sealedBatch));
        }
    }

    static void report(String name, int perCall, double seconds, int rounds, Op op) {
        run(op, seconds); // warm-up
        List<Double> us = new ArrayList<>();
        for (int r = 0; r < rounds; r++) {
            us.add(run(op, seconds) / perCall);
        }
        Collections.sort(us);
        double[] all = us.stream().mapToDouble(Double::doubleValue).toArray();
        System.out.printf("%-48s %10.3f µs/op  (rounds: %s)%n", name, us.get(us.size() / 2),
                Arrays.toString(Arrays.stream(all).mapToObj(d -> String.format("%.3f", d)).toArray()));
    }

    /** µs per call over about {@code seconds}. */
    static double run(Op op, double seconds) {
        long budget = (long) (seconds * 1e9);
        long calls = 0;
        long start = System.nanoTime();
        long elapsed;
        int batch = 1;
        do {
            for (int i = 0; i < batch; i++) {
                sink = op.run();
            }
            calls += batch;
            batch = Math.min(batch * 2, 1 << 16);
            elapsed = System.nanoTime() - start;
        } while (elapsed < budget);
        return elapsed / 1e3 / calls;
    }
}
