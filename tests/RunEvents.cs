using System.Text.Json;
using System.Text.Json.Serialization;
using CondenseCluster.Shared.Training;
using Xunit;

namespace CondenseCluster.Tests;

/// <summary>What a run wrote to the metrics.jsonl of its output folder, read back for tests to assert on values rather than on the console's sentences.</summary>
static class RunEvents
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() } };

    /// <summary>
    /// Every line of <paramref name="folder"/>/metrics.jsonl in order: start, steps, epochs, events, summary. Readable while
    /// the run writes: a line not yet ended is left out.
    /// </summary>
    public static JsonElement[] Lines(string folder)
    {
        using var file = new FileStream(Path.Combine(folder, "metrics.jsonl"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        string[] lines = new StreamReader(file).ReadToEnd().Split('\n');
        return [.. lines[..^1].Select(line => JsonDocument.Parse(line).RootElement)];
    }

    /// <summary>The lines of one <paramref name="type"/> ("start", "step", "epoch", "event", "summary").</summary>
    public static JsonElement[] Lines(string folder, string type) => [.. Lines(folder).Where(l => l.GetProperty("type").GetString() == type)];

    /// <summary>The events of the record named <paramref name="name"/> (e.g. "MasksInForce") in order, with their "time".</summary>
    public static JsonElement[] Events(string folder, string name) => [.. Lines(folder, "event").Where(l => l.GetProperty("event").GetString() == name)];

    /// <summary>The events of record <typeparamref name="T"/> in order, as records.</summary>
    public static T[] Of<T>(string folder) where T : TrainingEvent => [.. Events(folder, typeof(T).Name).Select(e => e.As<T>())];

    /// <summary>The only event of record <typeparamref name="T"/> (failing with every event of the run if there is not exactly one).</summary>
    public static T Single<T>(string folder) where T : TrainingEvent
    {
        var events = Of<T>(folder);
        Assert.True(events.Length == 1, $"{events.Length} {typeof(T).Name} events in:\n{string.Join('\n', Lines(folder, "event").Select(e => e.GetRawText()))}");
        return events[0];
    }

    /// <summary>A line (an event, an epoch, the summary) as the record that wrote it.</summary>
    public static T As<T>(this JsonElement line) => line.Deserialize<T>(Json)!;

    /// <summary>When the line was written.</summary>
    public static DateTimeOffset Time(this JsonElement line) => line.GetProperty("time").GetDateTimeOffset();
}
