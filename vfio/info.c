/* SPDX-License-Identifier: MIT */
/* vfio-info: a device's regions, capabilities and DMA_BUF probe answer, as text or JSON. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <linux/vfio.h>

#include "private.h"
#include "vgb/vfio.h"

static const char *errno_name(int err)
{
	const char *name = strerrorname_np(err < 0 ? -err : err);

	return name ? name : "unknown";
}

static const char *probe_name(const struct vgb_vfio_device *dev)
{
	if (dev->path == VGB_VFIO_PATH_VFIO_USER)
		return "none";
	switch (dev->dmabuf_probe) {
	case VGB_VFIO_PROBE_OK: return "ok";
	case VGB_VFIO_PROBE_ENOTTY: return "ENOTTY";
	case VGB_VFIO_PROBE_EOPNOTSUPP: return "EOPNOTSUPP";
	case VGB_VFIO_PROBE_OTHER: return errno_name(dev->dmabuf_probe_errno);
	default: return "not-run";
	}
}

static const char *probe_meaning(const struct vgb_vfio_device *dev)
{
	if (dev->path == VGB_VFIO_PATH_VFIO_USER)
		return "the vfio-user protocol has no DMA_BUF: views map the server's region fds";
	switch (dev->dmabuf_probe) {
	case VGB_VFIO_PROBE_OK: return "the device exports BAR ranges as dmabufs";
	case VGB_VFIO_PROBE_ENOTTY: return "the kernel has no VFIO DMA_BUF feature; Linux 6.19 added it";
	case VGB_VFIO_PROBE_EOPNOTSUPP: return "the driver does not export dmabufs";
	case VGB_VFIO_PROBE_OTHER: return "unexpected answer";
	default: return "not probed";
	}
}

static const struct {
	uint32_t bit;
	const char *name;
} region_flags[] = {
	{ VFIO_REGION_INFO_FLAG_READ, "read" },
	{ VFIO_REGION_INFO_FLAG_WRITE, "write" },
	{ VFIO_REGION_INFO_FLAG_MMAP, "mmap" },
	{ VFIO_REGION_INFO_FLAG_CAPS, "caps" },
};

static const struct {
	uint32_t cap;
	const char *name;
} cap_names[] = {
	{ VGB_VFIO_CAP_DMA_BUF, "dma_buf" },
	{ VGB_VFIO_CAP_MMAP, "mmap" },
	{ VGB_VFIO_CAP_RESET, "reset" },
	{ VGB_VFIO_CAP_IOMMUFD, "iommufd" },
};

static void json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void region_label(uint32_t index, char buf[24])
{
	const char *name = vgb_vfio_region_name(index);

	if (name)
		snprintf(buf, 24, "%s", name);
	else
		snprintf(buf, 24, "region%u", index);
}

static void print_text(struct vgb_vfio_device *dev, FILE *out)
{
	fprintf(out, "device %s\n", dev->name);
	fprintf(out, "  backend: %s, opened: %s\n", dev->ops->name, vgb_vfio_path_name(dev->path));
	fprintf(out, "  capabilities:");
	for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
		fprintf(out, " %s=%s", cap_names[i].name,
			vgb_vfio_device_has_cap(dev, cap_names[i].cap) ? "yes" : "no");
	fprintf(out, "\n  dma-buf probe: %s (%s)\n", probe_name(dev), probe_meaning(dev));
	fprintf(out, "  regions: %u\n", dev->num_regions);

	for (uint32_t i = 0; i < dev->num_regions; i++) {
		const struct vgb_vfio_region_info *info;
		char label[24];
		int r = vgb_vfio_region_info(dev, i, &info);

		region_label(i, label);
		if (r < 0) {
			fprintf(out, "  %-8s unavailable (%s)\n", label, errno_name(r));
			continue;
		}
		if (info->size == 0 && info->flags == 0) {
			fprintf(out, "  %-8s absent\n", label);
			continue;
		}
		fprintf(out, "  %-8s size 0x%llx  offset 0x%llx  flags 0x%x", label,
			(unsigned long long)info->size, (unsigned long long)info->offset, info->flags);
		for (size_t f = 0, n = 0; f < sizeof(region_flags) / sizeof(region_flags[0]); f++)
			if (info->flags & region_flags[f].bit)
				fprintf(out, "%s%s", n++ ? "," : " (", region_flags[f].name);
		fprintf(out, "%s\n", info->flags ? ")" : "");
		if (info->has_sparse) {
			fprintf(out, "           sparse mmap:");
			if (info->n_sparse == 0)
				fprintf(out, " none");
			for (uint32_t a = 0; a < info->n_sparse; a++)
				fprintf(out, " 0x%llx+0x%llx", (unsigned long long)info->sparse[a].offset,
					(unsigned long long)info->sparse[a].size);
			fprintf(out, "\n");
		}
		if (info->has_type)
			fprintf(out, "           type: 0x%x subtype: 0x%x\n", info->type, info->subtype);
	}
}

static void print_json(struct vgb_vfio_device *dev, FILE *out)
{
	fprintf(out, "{\n  \"name\": ");
	json_string(out, dev->name);
	fprintf(out, ",\n  \"backend\": ");
	json_string(out, dev->ops->name);
	fprintf(out, ",\n  \"path\": \"%s\",\n  \"capabilities\": {", vgb_vfio_path_name(dev->path));
	for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
		fprintf(out, "%s\"%s\": %s", i ? ", " : "", cap_names[i].name,
			vgb_vfio_device_has_cap(dev, cap_names[i].cap) ? "true" : "false");
	fprintf(out, "},\n  \"dmabuf_probe\": {\"result\": \"%s\", \"errno\": %d, "
		     "\"meaning\": \"%s\"},\n",
		probe_name(dev), dev->dmabuf_probe_errno, probe_meaning(dev));
	fprintf(out, "  \"generation\": %u,\n  \"regions\": [", dev->generation);

	for (uint32_t i = 0; i < dev->num_regions; i++) {
		const struct vgb_vfio_region_info *info;
		char label[24];
		int r = vgb_vfio_region_info(dev, i, &info);

		region_label(i, label);
		fprintf(out, "%s\n    {\"index\": %u, \"name\": \"%s\"", i ? "," : "", i, label);
		if (r < 0) {
			fprintf(out, ", \"error\": \"%s\"}", errno_name(r));
			continue;
		}
		fprintf(out, ", \"size\": %llu, \"offset\": %llu, \"flags\": %u, \"flag_names\": [",
			(unsigned long long)info->size, (unsigned long long)info->offset, info->flags);
		for (size_t f = 0, n = 0; f < sizeof(region_flags) / sizeof(region_flags[0]); f++)
			if (info->flags & region_flags[f].bit)
				fprintf(out, "%s\"%s\"", n++ ? ", " : "", region_flags[f].name);
		fprintf(out, "]");
		if (info->has_sparse) {
			fprintf(out, ", \"sparse\": [");
			for (uint32_t a = 0; a < info->n_sparse; a++)
				fprintf(out, "%s{\"offset\": %llu, \"size\": %llu}", a ? ", " : "",
					(unsigned long long)info->sparse[a].offset,
					(unsigned long long)info->sparse[a].size);
			fprintf(out, "]");
		}
		if (info->has_type)
			fprintf(out, ", \"type\": {\"type\": %u, \"subtype\": %u}", info->type,
				info->subtype);
		fprintf(out, "}");
	}
	fprintf(out, "\n  ]\n}\n");
}

int vgb_vfio_info_print(struct vgb_vfio_device *dev, FILE *out, bool json)
{
	if (!dev || !out)
		return -EINVAL;
	if (json)
		print_json(dev, out);
	else
		print_text(dev, out);
	fflush(out);
	return ferror(out) ? -EIO : 0;
}
