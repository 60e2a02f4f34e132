using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace CondenseCluster.Shared.Data;

/// <summary>
/// Assembles batches on background threads, ahead of the consumer, and hands them out in request order. The threads
/// share out the samples of one batch at a time (the next batch starts once every sample of the current one is being
/// read), so each batch is read in parallel; at most <c>capacity</c> batches exist between being started and being
/// taken, which bounds both memory and read-ahead.
/// The augmentation of a sample depends only on (seed, epoch, dataset index) through <see cref="SampleOrder.Augmentation"/>,
/// so it is the same whichever thread, worker or batch split reads it.
/// </summary>
public sealed class BatchPrefetcher : IDisposable
{
    /// <summary>A started batch and how far its reading has got; guarded by <see cref="gate"/>.</summary>
    sealed class PendingBatch(Batch batch)
    {
        public Batch Batch { get; } = batch;
        public int NextSample;
        public int Unfinished = batch.Count;
    }

    readonly IImageDataset dataset;
    readonly IEnumerator<BatchRequest> requests;
    readonly int seed, capacity, sampleLength;
    readonly Thread[] threads;
    readonly object gate = new();
    readonly Queue<PendingBatch> pending = new();
    /// <summary>The newest started batch: the only one that can have unclaimed samples, as a batch is started only when the previous one is fully claimed.</summary>
    PendingBatch? newest;
    bool requestsEnded, disposed;
    (string Message, Exception Cause)? failure;
    TimeSpan waitTime;

    public BatchPrefetcher(IImageDataset dataset, IEnumerable<BatchRequest> requests, int seed, int threads, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        (this.dataset, this.seed, this.capacity) = (dataset, seed, capacity);
        sampleLength = dataset.Channels * dataset.Size * dataset.Size;
        this.requests = requests.GetEnumerator();
        this.threads = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            this.threads[i] = new Thread(ReadSamples) { IsBackground = true, Name = $"batch-prefetch-{i}" };
            this.threads[i].Start();
        }
    }

    /// <summary>Total time the consumer has spent in <see cref="TryTake"/> waiting for data.</summary>
    public TimeSpan WaitTime { get { lock (gate) return waitTime; } }

    /// <summary>
    /// The next batch in request order, waiting for it if needed; false when all requests have been handed out.
    /// Throws <see cref="DataLoadException"/> when a sample could not be read.
    /// </summary>
    public bool TryTake([NotNullWhen(true)] out Batch? batch)
    {
        var waiting = Stopwatch.StartNew();
        lock (gate)
        {
            try
            {
                while (true)
                {
                    ObjectDisposedException.ThrowIf(disposed, this);
                    if (pending.TryPeek(out var head) && head.Unfinished == 0)
                    {
                        batch = pending.Dequeue().Batch;
                        Monitor.PulseAll(gate);
                        return true;
                    }
                    if (failure is { } failed) throw new DataLoadException(failed.Message, failed.Cause);
                    if (requestsEnded && pending.Count == 0)
                    {
                        batch = null;
                        return false;
                    }
                    Monitor.Wait(gate);
                }
            }
            finally
            {
                waitTime += waiting.Elapsed;
            }
        }
    }

    /// <summary>Stops the threads (each finishes at most the sample it is reading) and waits for them.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            Monitor.PulseAll(gate);
        }
        foreach (var thread in threads) thread.Join();
        requests.Dispose();
    }

    void ReadSamples()
    {
        while (NextSample() is var (batch, position))
        {
            int index = batch.Batch.Request.Indices[position];
            try
            {
                var augmentation = batch.Batch.Request.Augment ? SampleOrder.Augmentation(seed, batch.Batch.Request.Epoch, index) : null;
                dataset.Read(index, batch.Batch.Images.AsSpan(position * sampleLength, sampleLength), augmentation);
                batch.Batch.Labels[position] = dataset.Label(index);
            }
            catch (Exception e)
            {
                Fail($"{dataset.Description}: reading sample {index} (position {position} of a batch of epoch {batch.Batch.Request.Epoch}) failed: {e.Message}", e);
                return;
            }
            lock (gate)
                if (--batch.Unfinished == 0) Monitor.PulseAll(gate);
        }
    }

    /// <summary>Claims the next sample to read, starting the next batch when there is room; null when the thread should stop.</summary>
    (PendingBatch Batch, int Position)? NextSample()
    {
        lock (gate)
            while (true)
            {
                if (disposed || failure is not null) return null;
                if (newest is not null && newest.NextSample < newest.Batch.Count)
                    return (newest, newest.NextSample++);
                if (requestsEnded) return null;
                if (pending.Count < capacity)
                {
                    StartNextBatch();
                    continue;
                }
                Monitor.Wait(gate);
            }
    }

    void StartNextBatch()
    {
        try
        {
            if (!requests.MoveNext())
            {
                requestsEnded = true;
                Monitor.PulseAll(gate);
                return;
            }
        }
        catch (Exception e)
        {
            Fail($"{dataset.Description}: the batch requests failed: {e.Message}", e);
            return;
        }
        var request = requests.Current;
        newest = new PendingBatch(new Batch(request, new float[request.Indices.Length * sampleLength], new long[request.Indices.Length]));
        pending.Enqueue(newest);
        // An empty batch is finished as soon as it exists.
        if (request.Indices.Length == 0) Monitor.PulseAll(gate);
    }

    void Fail(string message, Exception cause)
    {
        lock (gate)
        {
            failure ??= (message, cause);
            Monitor.PulseAll(gate);
        }
    }
}
