using System.Diagnostics;
using CondenseCluster.Shared.Training;
using Spectre.Console;

namespace CondenseCluster.Coordinator.Cli;

/// <summary>
/// Shows a training run on the console: a progress bar redrawn in place on a terminal, plain periodic lines without
/// one (CI, logs), events on their own lines, and a summary table at the end.
/// </summary>
sealed class ConsoleProgress(TextWriter output, bool interactive, TimeSpan plainInterval) : ITrainingObserver
{
    /// <summary>On this process's console: redrawn in place on a terminal, a line every 10 s otherwise.</summary>
    public static ConsoleProgress OnConsole() => new(Console.Out, interactive: !Console.IsOutputRedirected, TimeSpan.FromSeconds(10));

    readonly Stopwatch sinceDraw = Stopwatch.StartNew(), sinceStart = Stopwatch.StartNew();
    RunStarted? run;
    StepMetrics? latest;
    bool lineOpen;

    public void Started(RunStarted started)
    {
        run = started;
        Line($"training {started.Description}");
        Line($"  {started.TotalSteps} steps ({started.Epochs} epochs x {started.StepsPerEpoch}), batch {started.BatchSize} in {started.MicroBatches} micro-batches, " +
             $"device {started.Device}, {started.Threads} threads, allocator: {started.Allocator}");
        Line($"  output: {started.OutputFolder}");
    }

    public void Step(StepMetrics step)
    {
        latest = step;
        bool last = run is not null && step.Step + 1 == run.TotalSteps;
        if (interactive && (sinceDraw.ElapsedMilliseconds >= 200 || last))
        {
            output.Write($"\r{Bar(step)}\u001b[K");
            lineOpen = true;
            sinceDraw.Restart();
        }
        else if (!interactive && (sinceDraw.Elapsed >= plainInterval || last))
        {
            Line(Status(step));
            sinceDraw.Restart();
        }
    }

    public void Epoch(EpochMetrics epoch)
    {
        string top5 = epoch.Test.Top5 < 1 ? $", top-5 {epoch.Test.Top5:P2}" : "";
        Line($"epoch {epoch.Epoch + 1}: train loss {epoch.TrainLoss:F4}, train accuracy {epoch.TrainAccuracy:P2}; " +
             $"test top-1 {epoch.Test.Top1:P2}{top5}, test loss {epoch.Test.Loss:F4} ({epoch.Seconds:F0} s)");
    }

    public void Event(TrainingEvent e) => Line(e.Text());

    public void Finished(TrainingSummary s)
    {
        Line($"finished {s.Steps} steps in {s.Seconds:F0} s: median {s.MedianStepMs:F0} ms per step, {s.MedianImagesPerSecond:F0} images/s; allocator: {s.Allocator}");
        if (s.StoppedEarly is not null) Line(s.StoppedEarly);
        var table = new Table().AddColumns("", "masked model", "converted (official)", "converted + recovery");
        table.AddRow("test top-1", Percent(s.Masked?.Top1), Percent(s.OfficialConverted?.Top1), Percent(s.Recovered?.Top1));
        if (s.Masked is { Top5: < 1 } m) table.AddRow("test top-5", Percent(m.Top5), Percent(s.OfficialConverted?.Top5), Percent(s.Recovered?.Top5));
        if (s.Average is { } a) table.AddRow($"EMA {a.Decay:G} top-1", Percent(a.Masked.Top1), Percent(a.Converted.Top1), "");
        table.AddRow("parameters", Count(s.ParametersBefore), Count(s.ParametersAfter), Count(s.ParametersAfter));
        table.AddRow("FLOPs", Count(s.FlopsBefore), Count(s.FlopsAfter), Count(s.FlopsAfter));
        table.AddRow("learned-conv sparsity", $"{s.Sparsity:P1}", "", "");
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) });
        console.Profile.Width = Math.Max(console.Profile.Width, 100);
        console.Write(table);
        if (s.Workers.Count > 0)
        {
            var workers = new Table().AddColumns("worker", "steps", "step ms", "compute ms", "all-reduce wait ms", "data wait ms", "MB sent, last step",
                "peak resident MB");
            foreach (var w in s.Workers)
                workers.AddRow(w.Worker, w.Steps.ToString("N0"), $"{w.StepMs:F0}", $"{w.ComputeMs:F0}", $"{w.AllReduceMs:F1}", $"{w.DataWaitMs:F1}",
                    $"{w.LastStepBytesSent / 1e6:F2}", $"{w.PeakResidentBytes / 1e6:F0}");
            Line("per worker (medians):");
            console.Write(workers);
        }
        foreach (var file in s.Files) Line($"wrote {file}");
    }

    static string Percent(double? value) => value is null ? "-" : $"{value:P2}";

    static string Count(long value) => value >= 1_000_000 ? $"{value / 1e6:F2}M" : value.ToString("N0");

    string Status(StepMetrics s)
    {
        long total = run?.TotalSteps ?? 0;
        double done = total == 0 ? 0 : (s.Step + 1.0) / total;
        double stepsLeft = total - s.Step - 1;
        double elapsedSteps = s.Step + 1 - (run?.FirstStep ?? 0);
        var eta = TimeSpan.FromSeconds(elapsedSteps <= 0 ? 0 : sinceStart.Elapsed.TotalSeconds / elapsedSteps * stepsLeft);
        return $"step {s.Step + 1}/{total} ({done:P0}) epoch {s.Epoch + 1}/{run?.Epochs} loss {s.Loss:F4} acc {s.Accuracy:P1} " +
               $"{s.ImagesPerSecond:F0} img/s lr {s.LearningRate:F4} stage {s.Stage}/{s.FinalStage} data wait {s.DataWaitMs:F0} ms ETA {eta:hh\\:mm\\:ss}";
    }

    string Bar(StepMetrics s)
    {
        const int width = 24;
        long total = Math.Max(1, run?.TotalSteps ?? 1);
        int filled = (int)(width * (s.Step + 1) / total);
        return $"[{new string('#', filled)}{new string('.', width - filled)}] {Status(s)}";
    }

    void Line(string text)
    {
        if (lineOpen) output.Write("\r\u001b[K");
        output.WriteLine(text);
        if (lineOpen && latest is not null) output.Write(Bar(latest));
    }
}
