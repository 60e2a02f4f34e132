using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using CondenseCluster.Shared.Control;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Tests.Cluster;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Control;

/// <summary>
/// A serving coordinator with a job of 2,500 steps running on two worker processes while the tests look at it: minutes
/// even on an idle machine, so every test, whatever its turn, sees it running. Disposing stops it.
/// </summary>
public sealed class CoordinatorWithAJob : IDisposable
{
    public ServingCoordinator Coordinator { get; } = new();
    public string Output => Path.Combine(Coordinator.Folder, "run");

    public CoordinatorWithAJob() =>
        Coordinator.Client.StartJob(new StartJobRequest { Configuration = ServingCoordinator.TinyJob(epochs: 20), Output = Output }, ServingCoordinator.Bearer());

    public void Dispose() => Coordinator.Dispose();
}

/// <summary>The dashboard in a real browser (Debian's headless Chromium), /metrics, and the run's TensorBoard file, during a real run.</summary>
[Collection(ClusterProcesses.Name)]
public class DashboardTests(CoordinatorWithAJob job, ITestOutputHelper log) : IClassFixture<CoordinatorWithAJob>
{
    readonly ServingCoordinator coordinator = job.Coordinator;
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    [Fact]
    public void AHeadlessBrowserSeesEveryWorkerTheLossCurveAndTheEventLogUpdateLive()
    {
        coordinator.WaitFor(s => s.State == "running" && s.Step >= 3, "three steps");
        var service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver");
        service.SuppressInitialDiagnosticInformation = true;
        var options = new ChromeOptions { BinaryLocation = "/usr/bin/chromium" };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1800");
        using var browser = new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
        browser.Navigate().GoToUrl($"{coordinator.WebAddress}/");

        string[] Workers() => browser.FindElements(By.CssSelector("#workers tbody tr[data-worker]")).Select(r => r.GetAttribute("data-worker")!).ToArray();
        int LossPoints() => int.Parse(browser.FindElement(By.Id("loss-chart")).GetAttribute("data-points") ?? "0", CultureInfo.InvariantCulture);
        string[] Events() => browser.FindElements(By.CssSelector("#events li")).Select(e => e.Text).ToArray();
        Eventually(() => Workers().Order().SequenceEqual(["worker-1", "worker-2"]) && LossPoints() > 1 && Events().Any(e => e.Contains("cluster formed")),
            () => $"workers [{string.Join(", ", Workers())}], loss points {LossPoints()}, {Events().Length} events");
        int before = LossPoints();
        // Live: the curve grows from the event stream, without reloading the page.
        Eventually(() => LossPoints() > before + 3, () => $"the loss curve stayed at {before} points ({LossPoints()})");
        // Text as rendered: the page shows states in capitals.
        Assert.Contains("running", browser.FindElement(By.Id("summary")).Text, StringComparison.OrdinalIgnoreCase);
        Assert.All(browser.FindElements(By.CssSelector("#workers tbody tr[data-worker]")),
            row => Assert.Contains("training", row.Text, StringComparison.OrdinalIgnoreCase));

        string artifacts = Directory.CreateDirectory(Path.Combine(AppContext.BaseDirectory, "artifacts")).FullName;
        string screenshot = Path.Combine(artifacts, "dashboard.png");
        browser.GetScreenshot().SaveAsFile(screenshot);
        Assert.True(new FileInfo(screenshot).Length > 10_000);
        log.WriteLine($"screenshot: {screenshot} ({LossPoints()} loss points, {Events().Length} events)");
    }

    [Fact]
    public async Task ThePageLoadsNothingFromOutsideTheCoordinator()
    {
        string page = await Http.GetStringAsync($"{coordinator.WebAddress}/");
        Assert.Contains("id=\"workers\"", page);
        Assert.DoesNotMatch(new Regex(@"(src|href)\s*=\s*[""']?(https?:)?//", RegexOptions.IgnoreCase), page);
        Assert.DoesNotMatch(new Regex(@"(url\(|@import|fetch\(|EventSource\()\s*[""']?(https?:)?//", RegexOptions.IgnoreCase), page);
    }

    [Fact]
    public async Task TheDashboardsControlsNeedTheToken()
    {
        coordinator.WaitFor(s => s.State == "running", "the job to run");
        var refused = await Http.PostAsync($"{coordinator.WebAddress}/api/checkpoint", null);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Contains("no bearer token", await refused.Content.ReadAsStringAsync());

        using var request = new HttpRequestMessage(HttpMethod.Post, $"{coordinator.WebAddress}/api/checkpoint");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ServingCoordinator.Token);
        var accepted = await Http.SendAsync(request);
        string answer = await accepted.Content.ReadAsStringAsync();
        Assert.True(accepted.IsSuccessStatusCode, answer);
        var path = Regex.Match(answer, @"checkpoint of step \d+: ([^""]+\.ccc)").Groups[1].Value;
        Assert.True(File.Exists(path), answer);
    }

    [Fact]
    public async Task MetricsParseAsPrometheusTextAndTheirCountersMoveDuringTheRun()
    {
        coordinator.WaitFor(s => s.State == "running" && s.Step >= 2, "two steps");
        var first = PrometheusText.Parse(await Http.GetStringAsync($"{coordinator.WebAddress}/metrics"));
        long step = coordinator.Client.GetStatus(new GetStatusRequest(), ServingCoordinator.Bearer()).Step;
        coordinator.WaitFor(s => s.Step >= step + 3, "three more steps");
        var second = PrometheusText.Parse(await Http.GetStringAsync($"{coordinator.WebAddress}/metrics"));

        foreach (string counter in new[] { "condense_steps_total", "condense_step_seconds_count", "condense_worker_allreduce_bytes_total{worker=\"worker-1\"}",
                     "condense_worker_compute_seconds_total{worker=\"worker-2\"}" })
            Assert.True(second.Samples[counter] > first.Samples[counter], $"{counter}: {first.Samples[counter]} then {second.Samples[counter]}");
        Assert.Equal("counter", second.Types["condense_steps_total"]);
        Assert.Equal("histogram", second.Types["condense_step_seconds"]);
        Assert.Equal(2, second.Samples["condense_workers_alive"]);
        Assert.Equal(0, second.Samples["condense_worker_failures_total"]);
        Assert.InRange(second.Samples["condense_loss"], 0.01, 10);
    }

    [Fact]
    public void TheRunsTensorBoardFileReadsBackRecordByRecordWithTheExpectedTags()
    {
        coordinator.WaitFor(s => s.State == "running" && s.Step >= 5, "five steps");
        string file = Assert.Single(Directory.GetFiles(job.Output, "events.out.tfevents.*"));
        // The file is written after the status moves on, and a live file may end in a record still being written:
        // read until five loss points are there. Each read verifies the length and data CRC of every whole record.
        (long Step, string Tag)[] scalars = [];
        long[] lossSteps = [];
        string lastRead = "";
        Eventually(() =>
        {
            try
            {
                var events = TensorBoardEventReader.Read(file);
                Assert.Equal("brain.Event:2", events[0].FileVersion);
                scalars = events.Skip(1).SelectMany(e => e.Summary.Value.Select(v => (e.Step, v.Tag))).ToArray();
                lossSteps = scalars.Where(s => s.Tag == "train/loss").Select(s => s.Step).ToArray();
                lastRead = $"{lossSteps.Length} loss points";
            }
            catch (InvalidDataException tail)
            {
                lastRead = tail.Message;
                return false;
            }
            return lossSteps.Length >= 5;
        }, () => lastRead);
        Assert.Equal(Enumerable.Range(1, lossSteps.Length).Select(s => (long)s), lossSteps);
        foreach (string tag in new[] { "train/accuracy", "train/learning_rate", "train/images_per_second", "condensing/sparsity" })
            Assert.Contains(scalars, s => s.Tag == tag);
    }

    static void Eventually(Func<bool> condition, Func<string> state)
    {
        var until = DateTime.UtcNow.AddSeconds(60);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, $"not seen within 60 s: {state()}");
            Thread.Sleep(250);
        }
    }
}

/// <summary>The Prometheus text exposition format, parsed strictly: every line a comment, a TYPE/HELP line or a sample.</summary>
sealed record PrometheusText(Dictionary<string, double> Samples, Dictionary<string, string> Types)
{
    static readonly Regex Sample = new(@"^([a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*=""(\\.|[^""\\])*"",?)*\})?) (\S+)( -?\d+)?$");
    static readonly Regex Type = new(@"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$");

    public static PrometheusText Parse(string text)
    {
        var samples = new Dictionary<string, double>();
        var types = new Dictionary<string, string>();
        foreach (string line in text.Split('\n').Where(l => l.Length > 0))
        {
            if (Type.Match(line) is { Success: true } type) types[type.Groups[1].Value] = type.Groups[2].Value;
            else if (line.StartsWith("# HELP ", StringComparison.Ordinal) || line.StartsWith('#')) continue;
            else
            {
                var sample = Sample.Match(line);
                Assert.True(sample.Success, $"not a Prometheus sample line: '{line}'");
                samples[sample.Groups[1].Value] = double.Parse(sample.Groups[5].Value, CultureInfo.InvariantCulture);
            }
        }
        // Every sample belongs to a declared metric (a histogram's series carry suffixes).
        foreach (string name in samples.Keys.Select(k => k.Split('{')[0]))
            Assert.True(types.ContainsKey(name) || types.ContainsKey(Regex.Replace(name, "_(bucket|sum|count)$", "")), $"{name} has no # TYPE line");
        return new PrometheusText(samples, types);
    }
}
