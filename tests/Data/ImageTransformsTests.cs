using CondenseCluster.Shared.Data;
using Xunit;

namespace CondenseCluster.Tests.Data;

public class ImageTransformsTests
{
    [Theory]
    [InlineData(400, 20, 186, 0, 27, 20)]
    [InlineData(20, 400, 0, 186, 20, 27)]
    public void RandomResizedCropFallsBackToTheCentralCropWithTheRatioClamped(int width, int height, int x, int y, int w, int h)
    {
        // No crop of at least 8 % of the area with a ratio in [3/4, 4/3] fits such strips, so all 10 attempts fail.
        for (int seed = 0; seed < 20; seed++)
            Assert.Equal(new CropBox(x, y, w, h), ImageTransforms.RandomResizedCrop(new Random(seed), width, height));
    }

    [Fact]
    public void RandomResizedCropStaysInsideTheImageWithinScaleAndRatio()
    {
        for (int seed = 0; seed < 500; seed++)
        {
            var box = ImageTransforms.RandomResizedCrop(new Random(seed), 500, 375);
            Assert.True(box.X >= 0 && box.Y >= 0 && box.X + box.Width <= 500 && box.Y + box.Height <= 375, $"{box}");
            double area = box.Width * box.Height / (500.0 * 375), ratio = box.Width / box.Height;
            // Rounding the sides to whole pixels moves area and ratio a little beyond the drawn values.
            Assert.InRange(area, 0.075, 1);
            Assert.InRange(ratio, 0.74, 1.35);
        }
    }

    [Fact]
    public void ResizeThenCenterCropMapsTheCentral224OfTheResizedImageBack()
    {
        // 500x375 → Resize(256) → 341x256 (⌊256·500/375⌋) → CenterCrop(224) at top 16, left round(58.5) = 58 (half to even).
        var box = ImageTransforms.ResizeThenCenterCrop(500, 375, 256, 224);
        Assert.Equal(58 * 500.0 / 341, box.X, 9);
        Assert.Equal(16 * 375.0 / 256, box.Y, 9);
        Assert.Equal(224 * 500.0 / 341, box.Width, 9);
        Assert.Equal(224 * 375.0 / 256, box.Height, 9);
        Assert.Equal(new CropBox(16, 16, 224, 224), ImageTransforms.ResizeThenCenterCrop(256, 256, 256, 224));
    }

    [Fact]
    public void WriteNormalizedPlacesMirrorsAndPadsInterleavedPixels()
    {
        // A 2x2 RGBA image with distinct channel values, placed at (1, 0) in a 3x3 output, then mirrored.
        byte[] rgba = [10, 20, 30, 255, 40, 50, 60, 255, 70, 80, 90, 255, 100, 110, 120, 255];
        var normalization = new Normalization([0f, 0f, 0f], [1f, 1f, 1f]);
        var output = new float[27];
        ImageTransforms.WriteNormalized(ByteImage.Interleaved(rgba, 2, 2, 4, 8), 1, 0, flip: true, normalization, output, 3);

        float V(byte value) => value / 255f;
        // Unflipped red plane: [0 0 0 | 10 40 0 | 70 100 0]; mirrored left–right.
        Assert.Equal([0, 0, 0, 0, V(40), V(10), 0, V(100), V(70)], output[..9]);
        Assert.Equal([0, 0, 0, 0, V(60), V(30), 0, V(120), V(90)], output[18..]);
    }
}
