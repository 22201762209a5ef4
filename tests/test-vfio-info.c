/* SPDX-License-Identifier: MIT */
/*
 * vfio-info: vgb_vfio_info_print() as text and JSON (checked by Python's json module) for the
 * virtual device and the kernel backend on the fake VFIO kernel, a region query error shown
 * instead of aborting, and the vgbctl binary's exit codes. argv[1] is the vgbctl to run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake-vfio.h"
#include "fault.h"
#include "kernel.h"
#include "tap.h"
#include "vgb/vfio.h"

static char *print(struct vgb_vfio_device *dev, bool json)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	if (!out)
		tap_bail("open_memstream");
	if (vgb_vfio_info_print(dev, out, json) < 0)
		tap_diag("vgb_vfio_info_print failed");
	fclose(out);
	return buf;
}

/* Runs @check (Python, with the parsed object as `d`) on @json; returns its exit status. */
static int python_check(const char *json, const char *check)
{
	FILE *p;

	/* Through the environment: no shell quoting of the check. */
	setenv("VGB_JSON_CHECK", check, 1);
	p = popen("python3 -c 'import json, os, sys; d = json.load(sys.stdin); "
		  "exec(os.environ[\"VGB_JSON_CHECK\"])'",
		  "w");
	if (!p)
		return -1;
	fputs(json, p);
	return pclose(p);
}

static void test_virtual(void)
{
	struct vgb_vfio_device *dev = NULL;
	char *text, *json;
	int r = vgb_vfio_vdev_create("bar0=16K:nommap,bar2=64M:sparse=0+16M;32M+32M,"
				     "bar4=4K:type=0x80001af4/1,name=vgpu1,dmabuf=nodriver",
				     &dev);

	if (!tap_is_errno(r, 0, "virtual device"))
		return;
	text = print(dev, false);
	tap_ok(strstr(text, "device vgpu1\n") != NULL, "text: name");
	tap_ok(strstr(text, "dma_buf=no mmap=yes reset=yes iommufd=no") != NULL,
	       "text: capabilities");
	tap_ok(strstr(text, "dma-buf probe: EOPNOTSUPP") != NULL, "text: probe answer");
	tap_ok(strstr(text, "BAR2     size 0x4000000  offset 0x0  flags 0xf (read,write,mmap,caps)") !=
		       NULL,
	       "text: BAR2 line");
	tap_ok(strstr(text, "sparse mmap: 0x0+0x1000000 0x2000000+0x2000000") != NULL,
	       "text: sparse areas");
	tap_ok(strstr(text, "type: 0x80001af4 subtype: 0x1") != NULL, "text: region type");
	tap_ok(strstr(text, "BAR1     absent") != NULL, "text: absent BAR");
	free(text);

	json = print(dev, true);
	r = python_check(json,
			 "assert d['name'] == 'vgpu1' and d['path'] == 'virtual'\n"
			 "assert d['capabilities'] == {'dma_buf': False, 'mmap': True, "
			 "'reset': True, 'iommufd': False}\n"
			 "assert d['dmabuf_probe']['result'] == 'EOPNOTSUPP'\n"
			 "assert d['dmabuf_probe']['errno'] == -95\n"
			 "assert len(d['regions']) == 9\n"
			 "b2 = d['regions'][2]\n"
			 "assert b2['size'] == 64 << 20 and b2['flags'] == 15\n"
			 "assert b2['sparse'] == [{'offset': 0, 'size': 16 << 20}, "
			 "{'offset': 32 << 20, 'size': 32 << 20}]\n"
			 "assert d['regions'][4]['type'] == {'type': 0x80001af4, 'subtype': 1}\n"
			 "assert d['regions'][1]['size'] == 0 and 'sparse' not in d['regions'][1]");
	tap_is_int(r, 0, "JSON parses and holds the regions, caps and probe answer");
	free(json);
	vgb_vfio_device_destroy(dev);
}

static void test_kernel(void)
{
	struct fake_vfio *f = fake_vfio_create();
	struct vgb_vfio_device *dev = NULL;
	char *text, *json;
	int fd, r;

	if (!f)
		tap_bail("fake");
	fake_vfio_install(f);
	fd = fake_vfio_dup_device(f);
	r = vgb_vfio_kernel_adopt(fd, "vmm-\"dev\"", &dev);
	if (!tap_is_errno(r, 0, "adopted fake device"))
		goto out;
	text = print(dev, false);
	tap_ok(strstr(text, "backend: kernel, opened: adopted") != NULL, "text: kernel, adopted");
	tap_ok(strstr(text, "dma-buf probe: ok") != NULL, "text: probe ok");
	tap_ok(strstr(text, "BAR4     size 0x10000  offset 0x5000000") != NULL,
	       "text: region offset in the device fd");
	free(text);

	/* A region whose query fails is shown with its errno; the rest still prints. */
	vgb_vfio_device_reset(dev);
	fault_install();
	fault_arm_ioctl(1, EIO);
	json = print(dev, true);
	fault_remove();
	r = python_check(json, "assert d['name'] == 'vmm-\"dev\"'\n"
			       "assert d['regions'][0] == {'index': 0, 'name': 'BAR0', 'error': 'EIO'}\n"
			       "assert d['regions'][2]['offset'] == 3 << 24\n"
			       "assert d['capabilities']['dma_buf'] is True\n"
			       "assert d['generation'] == 1");
	tap_is_int(r, 0, "JSON: escaped name, a failed region as an error, the others intact");
	free(json);
	vgb_vfio_device_destroy(dev);
out:
	fake_vfio_destroy(f);
}

/* Runs vgbctl with @args; returns its exit status and stdout (caller frees). */
static int run(const char *vgbctl, const char *args, char **ret_out)
{
	char cmd[1024], *buf = NULL;
	size_t len = 0;
	FILE *p, *mem;
	int c, status;

	snprintf(cmd, sizeof(cmd), "%s %s 2>/dev/null", vgbctl, args);
	p = popen(cmd, "r");
	mem = open_memstream(&buf, &len);
	if (!p || !mem)
		tap_bail("popen");
	while ((c = fgetc(p)) != EOF)
		fputc(c, mem);
	fclose(mem);
	status = pclose(p);
	if (ret_out)
		*ret_out = buf;
	else
		free(buf);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_vgbctl(const char *vgbctl)
{
	char *out = NULL;

	tap_is_int(run(vgbctl, "vfio-info --virtual default --json", &out), 0,
		   "vgbctl vfio-info --virtual default --json");
	tap_is_int(python_check(out, "assert d['regions'][2]['size'] == 64 << 20\n"
				     "assert d['name'] == 'vgpu0'"),
		   0, "its JSON: the default's 64 MiB BAR2");
	free(out);
	tap_is_int(run(vgbctl, "vfio-info --virtual default", &out), 0, "text output");
	tap_ok(out && strstr(out, "BAR2     size 0x4000000") != NULL, "text shows BAR2");
	free(out);
	tap_is_int(run(vgbctl, "vfio-info --virtual bar2=3K", NULL), 1, "bad spec: exit 1");
	tap_is_int(run(vgbctl, "vfio-info 0000:zz:00.0", NULL), 1, "bad BDF: exit 1");
	tap_is_int(run(vgbctl, "vfio-info", NULL), 2, "no device: usage, exit 2");
	tap_is_int(run(vgbctl, "vfio-info a b", NULL), 2, "two devices: exit 2");
	tap_is_int(run(vgbctl, "", NULL), 2, "no command: exit 2");
	tap_is_int(run(vgbctl, "frobnicate", NULL), 2, "unknown command: exit 2");
	tap_is_int(run(vgbctl, "--help", &out), 0, "--help: exit 0");
	tap_ok(out && strstr(out, "vfio-info") != NULL, "--help lists vfio-info");
	free(out);
	tap_is_int(run(vgbctl, "vfio-info --help", NULL), 0, "vfio-info --help: exit 0");
}

int main(int argc, char **argv)
{
	tap_plan_lazy();
	if (system("python3 -c pass") != 0)
		tap_bail("python3 is missing: scripts/install-deps installs it");
	test_virtual();
	test_kernel();
	if (argc > 1)
		test_vgbctl(argv[1]);
	else
		tap_ok(false, "the vgbctl path is passed by meson");
	return tap_done();
}
