/*-------------------------------------------------------------------------
 *
 * test_reading.c
 *		Checks of the message parser (bridge/reading.c) without a broker
 *		or a database: each case feeds a payload and states the outcome.
 *
 * Run by "make -C test/ingest check"; prints one line per failed check and
 * exits 1 if there was any.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "reading.h"

/* 2025-07-09T07:15:02Z, the "now" of every case */
#define NOW_US		(INT64_C(1752045302) * 1000000)

/* Parse a JSON message of device "esp32-01"; returns the reason */
static RejectReason
json_case(const char *payload, ReadingBatch *b)
{
	return reading_parse_json(payload, strlen(payload), "esp32-01", NOW_US, b);
}

static RejectReason
json_reason(const char *payload)
{
	ReadingBatch b;
	RejectReason r = json_case(payload, &b);

	if (r != REJECT_NONE && b.detail[0] == '\0')
	{
		fprintf(stderr, "rejected without a detail: %s\n", payload);
		failures++;
	}
	reading_batch_free(&b);
	return r;
}

static RejectReason
senml_case(const char *payload, ReadingBatch *b)
{
	return reading_parse_senml(payload, strlen(payload), "esp32-01", NOW_US, b);
}

static RejectReason
senml_reason(const char *payload)
{
	ReadingBatch b;
	RejectReason r = senml_case(payload, &b);

	reading_batch_free(&b);
	return r;
}

static bool
ts_is(const char *text, int64_t expect)
{
	int64_t		us;

	return reading_parse_rfc3339(text, &us) && us == expect;
}

static bool
ts_bad(const char *text)
{
	int64_t		us;

	return !reading_parse_rfc3339(text, &us);
}

static void
test_rfc3339(void)
{
	char		buf[READING_TS_LEN];

	CHECK(ts_is("2025-07-09T07:15:02Z", INT64_C(1752045302000000)));
	CHECK(ts_is("2025-07-09t07:15:02z", INT64_C(1752045302000000)));
	CHECK(ts_is("2025-07-09T09:15:02+02:00", INT64_C(1752045302000000)));
	CHECK(ts_is("2025-07-09T02:45:02-04:30", INT64_C(1752045302000000)));
	CHECK(ts_is("2025-07-09T07:15:02-00:00", INT64_C(1752045302000000)));
	CHECK(ts_is("2025-07-09T07:15:02.25Z", INT64_C(1752045302250000)));
	CHECK(ts_is("2025-07-09T07:15:02.1234565Z", INT64_C(1752045302123457)));
	CHECK(ts_is("2025-07-09T07:15:02.123456789Z", INT64_C(1752045302123457)));
	CHECK(ts_is("2025-07-09T07:15:02.9999996Z", INT64_C(1752045303000000)));
	CHECK(ts_is("2024-02-29T23:59:59Z", INT64_C(1709251199000000)));
	CHECK(ts_is("1970-01-01T00:00:00Z", 0));
	CHECK(ts_is("9999-12-31T23:59:59Z", INT64_C(253402300799000000)));

	CHECK(ts_bad(""));
	CHECK(ts_bad("2025-07-09"));
	CHECK(ts_bad("2025-07-09T07:15:02"));		/* no offset */
	CHECK(ts_bad("2025-07-09 07:15:02Z"));		/* space for T */
	CHECK(ts_bad("2025-7-09T07:15:02Z"));
	CHECK(ts_bad("2025-07-09T07:15Z"));
	CHECK(ts_bad("2025-02-29T00:00:00Z"));		/* not a leap year */
	CHECK(ts_bad("2025-04-31T00:00:00Z"));
	CHECK(ts_bad("2025-13-01T00:00:00Z"));
	CHECK(ts_bad("2025-00-01T00:00:00Z"));
	CHECK(ts_bad("2025-07-00T00:00:00Z"));
	CHECK(ts_bad("2025-07-09T24:00:00Z"));
	CHECK(ts_bad("2025-07-09T23:60:00Z"));
	CHECK(ts_bad("2025-07-09T23:59:60Z"));		/* leap second */
	CHECK(ts_bad("2025-07-09T07:15:02+24:00"));
	CHECK(ts_bad("2025-07-09T07:15:02+02:60"));
	CHECK(ts_bad("2025-07-09T07:15:02+0200"));
	CHECK(ts_bad("2025-07-09T07:15:02.Z"));
	CHECK(ts_bad("2025-07-09T07:15:02.1234567890Z"));	/* 10 digits */
	CHECK(ts_bad("2025-07-09T07:15:02Zjunk"));
	CHECK(ts_bad("+2025-07-09T07:15:02Z"));

	reading_format_ts(INT64_C(1752045302250000), buf);
	CHECK(strcmp(buf, "2025-07-09T07:15:02.250000Z") == 0);
	reading_format_ts(0, buf);
	CHECK(strcmp(buf, "1970-01-01T00:00:00.000000Z") == 0);
}

static void
test_topic(void)
{
	char		dev[READING_MAX_ID + 1];
	char		longtopic[400];

	CHECK(reading_topic_device("devices/+/telemetry", "devices/esp32-01/telemetry",
							   dev, sizeof(dev)) == REJECT_NONE);
	CHECK(strcmp(dev, "esp32-01") == 0);
	CHECK(reading_topic_device("+/t", "dev-7/t", dev, sizeof(dev)) == REJECT_NONE);
	CHECK(strcmp(dev, "dev-7") == 0);
	CHECK(reading_topic_device("a/b/+", "a/b/x", dev, sizeof(dev)) == REJECT_NONE);
	CHECK(strcmp(dev, "x") == 0);

	CHECK(reading_topic_device("devices/+/telemetry", "devices//telemetry",
							   dev, sizeof(dev)) == REJECT_BAD_TOPIC);
	CHECK(reading_topic_device("devices/+/telemetry", "devices/a/b/telemetry",
							   dev, sizeof(dev)) == REJECT_BAD_TOPIC);
	CHECK(reading_topic_device("devices/+/telemetry", "devices/a",
							   dev, sizeof(dev)) == REJECT_BAD_TOPIC);
	CHECK(reading_topic_device("devices/+/telemetry", "devices/a/senml",
							   dev, sizeof(dev)) == REJECT_BAD_TOPIC);
	CHECK(reading_topic_device("devices/+/telemetry", "devices/a\x01/telemetry",
							   dev, sizeof(dev)) == REJECT_BAD_TOPIC);
	CHECK(reading_topic_device("devices/+/telemetry", "devices/a\xc2\x85/telemetry",
							   dev, sizeof(dev)) == REJECT_BAD_TOPIC);
	CHECK(reading_topic_device("devices/+/telemetry", "devices/\xff/telemetry",
							   dev, sizeof(dev)) == REJECT_BAD_TOPIC);
	CHECK(reading_topic_device("devices/+/telemetry", "devices/\xc3\xa9t\xc3\xa9/telemetry",
							   dev, sizeof(dev)) == REJECT_NONE);

	/* 128 bytes of device id is the limit */
	snprintf(longtopic, sizeof(longtopic), "devices/%0128d/telemetry", 7);
	CHECK(reading_topic_device("devices/+/telemetry", longtopic,
							   dev, sizeof(dev)) == REJECT_NONE);
	snprintf(longtopic, sizeof(longtopic), "devices/%0129d/telemetry", 7);
	CHECK(reading_topic_device("devices/+/telemetry", longtopic,
							   dev, sizeof(dev)) == REJECT_BAD_TOPIC);
}

static void
test_json_good(void)
{
	ReadingBatch b;

	CHECK(json_case("{\"device_id\":\"esp32-01\",\"sensor_type\":\"temperature\","
					"\"value\":24.8,\"unit\":\"\xc2\xb0" "C\","
					"\"timestamp\":\"2025-07-09T07:15:02Z\"}", &b) == REJECT_NONE);
	CHECK(b.count == 1);
	CHECK(strcmp(b.readings[0].sensor_type, "temperature") == 0);
	CHECK(b.readings[0].value == 24.8);
	CHECK(strcmp(b.readings[0].unit, "\xc2\xb0" "C") == 0);
	CHECK(b.readings[0].has_ts && b.readings[0].ts_us == NOW_US);
	reading_batch_free(&b);

	/* no device_id, no unit, no timestamp; integer value */
	CHECK(json_case("{\"sensor_type\":\"rh\",\"value\":41}", &b) == REJECT_NONE);
	CHECK(b.count == 1 && b.readings[0].value == 41.0);
	CHECK(b.readings[0].unit == NULL && !b.readings[0].has_ts);
	reading_batch_free(&b);

	/* epoch seconds with a fraction; null unit; unknown members ignored */
	CHECK(json_case("{\"sensor_type\":\"t\",\"value\":-0.5,\"unit\":null,"
					"\"timestamp\":1752045301.5,\"rssi\":-70}", &b) == REJECT_NONE);
	CHECK(b.readings[0].ts_us == INT64_C(1752045301500000));
	CHECK(b.readings[0].unit == NULL && b.readings[0].value == -0.5);
	reading_batch_free(&b);

	/* a bulk keeps its order */
	CHECK(json_case("{\"device_id\":\"esp32-01\",\"readings\":["
					"{\"sensor_type\":\"a\",\"value\":3},"
					"{\"sensor_type\":\"b\",\"value\":1,\"device_id\":\"esp32-01\"},"
					"{\"sensor_type\":\"a\",\"value\":2,\"timestamp\":0}]}",
					&b) == REJECT_NONE);
	CHECK(b.count == 3);
	CHECK(strcmp(b.readings[0].sensor_type, "a") == 0 && b.readings[0].value == 3);
	CHECK(strcmp(b.readings[1].sensor_type, "b") == 0 && b.readings[1].value == 1);
	CHECK(b.readings[2].value == 2 && b.readings[2].has_ts &&
		  b.readings[2].ts_us == 0);
	reading_batch_free(&b);

	/* just under a day ahead is accepted */
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,"
					  "\"timestamp\":\"2025-07-10T07:15:01Z\"}") == REJECT_NONE);
}

static void
test_json_bad(void)
{
	CHECK(json_reason("") == REJECT_MALFORMED_JSON);
	CHECK(json_reason("{") == REJECT_MALFORMED_JSON);
	CHECK(json_reason("not json") == REJECT_MALFORMED_JSON);
	CHECK(json_reason("[1,2]") == REJECT_MALFORMED_JSON);
	CHECK(json_reason("\"x\"") == REJECT_MALFORMED_JSON);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1} x") == REJECT_MALFORMED_JSON);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,\"value\":2}") ==
		  REJECT_MALFORMED_JSON);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1e400}") ==
		  REJECT_MALFORMED_JSON);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":NaN}") ==
		  REJECT_MALFORMED_JSON);
	CHECK(json_reason("{\"sensor_type\":\"\xff\",\"value\":1}") ==
		  REJECT_MALFORMED_JSON);

	CHECK(json_reason("{\"value\":1}") == REJECT_MISSING_FIELD);
	CHECK(json_reason("{\"sensor_type\":\"t\"}") == REJECT_MISSING_FIELD);
	CHECK(json_reason("{\"sensor_type\":null,\"value\":1}") == REJECT_MISSING_FIELD);

	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":\"24.8\"}") ==
		  REJECT_INVALID_VALUE);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":true}") ==
		  REJECT_INVALID_VALUE);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":null}") ==
		  REJECT_INVALID_VALUE);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":[1]}") ==
		  REJECT_INVALID_VALUE);

	CHECK(json_reason("{\"sensor_type\":\"\",\"value\":1}") == REJECT_INVALID_FIELD);
	CHECK(json_reason("{\"sensor_type\":5,\"value\":1}") == REJECT_INVALID_FIELD);
	CHECK(json_reason("{\"sensor_type\":\"a\\nb\",\"value\":1}") ==
		  REJECT_INVALID_FIELD);
	CHECK(json_reason("{\"sensor_type\":\"a\\u0085b\",\"value\":1}") ==
		  REJECT_INVALID_FIELD);
	CHECK(json_reason("{\"sensor_type\":\"a\\u0000b\",\"value\":1}") ==
		  REJECT_MALFORMED_JSON);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,\"unit\":5}") ==
		  REJECT_INVALID_FIELD);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,\"device_id\":7}") ==
		  REJECT_INVALID_FIELD);

	CHECK(json_reason("{\"device_id\":\"esp32-02\",\"sensor_type\":\"t\",\"value\":1}") ==
		  REJECT_DEVICE_MISMATCH);
	CHECK(json_reason("{\"device_id\":\"esp32-02\",\"readings\":"
					  "[{\"sensor_type\":\"t\",\"value\":1}]}") ==
		  REJECT_DEVICE_MISMATCH);
	CHECK(json_reason("{\"readings\":[{\"sensor_type\":\"t\",\"value\":1},"
					  "{\"sensor_type\":\"t\",\"value\":1,\"device_id\":\"x\"}]}") ==
		  REJECT_DEVICE_MISMATCH);

	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,\"timestamp\":\"yesterday\"}") ==
		  REJECT_BAD_TIMESTAMP);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,"
					  "\"timestamp\":\"2025-07-09T07:15:02\"}") == REJECT_BAD_TIMESTAMP);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,\"timestamp\":-1}") ==
		  REJECT_BAD_TIMESTAMP);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,\"timestamp\":true}") ==
		  REJECT_BAD_TIMESTAMP);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,\"timestamp\":1e300}") ==
		  REJECT_BAD_TIMESTAMP);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,"
					  "\"timestamp\":\"1969-12-31T23:59:59Z\"}") == REJECT_BAD_TIMESTAMP);
	CHECK(json_reason("{\"sensor_type\":\"t\",\"value\":1,"
					  "\"timestamp\":\"2025-07-10T07:15:03Z\"}") == REJECT_BAD_TIMESTAMP);

	CHECK(json_reason("{\"readings\":[]}") == REJECT_MISSING_FIELD);
	CHECK(json_reason("{\"readings\":{}}") == REJECT_MALFORMED_JSON);
	CHECK(json_reason("{\"readings\":[1]}") == REJECT_MALFORMED_JSON);
	CHECK(json_reason("{\"readings\":[{\"sensor_type\":\"t\",\"value\":1}],"
					  "\"value\":1}") == REJECT_MALFORMED_JSON);
	CHECK(json_reason("{\"readings\":[{\"sensor_type\":\"t\",\"value\":1},"
					  "{\"sensor_type\":\"t\",\"value\":\"x\"}]}") ==
		  REJECT_INVALID_VALUE);
}

/* Payloads at and beyond the limits */
static void
test_limits(void)
{
	char	   *big;
	size_t		size = READING_MAX_PAYLOAD + 64;
	size_t		len;
	ReadingBatch b;
	char		id[300];

	/* 128-byte sensor type fits, 129 does not */
	snprintf(id, sizeof(id), "{\"sensor_type\":\"%0128d\",\"value\":1}", 0);
	CHECK(json_reason(id) == REJECT_NONE);
	snprintf(id, sizeof(id), "{\"sensor_type\":\"%0129d\",\"value\":1}", 0);
	CHECK(json_reason(id) == REJECT_INVALID_FIELD);

	big = malloc(size + 1);

	/* 10,000 readings fit, 10,001 do not */
	for (int n = READING_MAX_PER_MESSAGE; n <= READING_MAX_PER_MESSAGE + 1; n++)
	{
		len = (size_t) snprintf(big, size, "{\"readings\":[");
		for (int i = 0; i < n; i++)
			len += (size_t) snprintf(big + len, size - len, "%s{\"sensor_type\":\"t\",\"value\":%d}",
									 i ? "," : "", i);
		len += (size_t) snprintf(big + len, size - len, "]}");
		CHECK(reading_parse_json(big, len, "d", NOW_US, &b) ==
			  (n > READING_MAX_PER_MESSAGE ? REJECT_TOO_LARGE : REJECT_NONE));
		if (n == READING_MAX_PER_MESSAGE)
			CHECK(b.count == n && b.readings[n - 1].value == n - 1);
		reading_batch_free(&b);
	}

	/* one byte over the payload limit, even if it is valid JSON */
	memset(big, ' ', size);
	memcpy(big, "{\"sensor_type\":\"t\",\"value\":1}", 29);
	CHECK(reading_parse_json(big, READING_MAX_PAYLOAD, "d", NOW_US, &b) == REJECT_NONE);
	reading_batch_free(&b);
	CHECK(reading_parse_json(big, READING_MAX_PAYLOAD + 1, "d", NOW_US, &b) ==
		  REJECT_TOO_LARGE);
	reading_batch_free(&b);

	/* a 257-byte unit is refused */
	len = (size_t) snprintf(big, size, "{\"sensor_type\":\"t\",\"value\":1,\"unit\":\"%0257d\"}", 0);
	CHECK(reading_parse_json(big, len, "d", NOW_US, &b) == REJECT_INVALID_FIELD);
	reading_batch_free(&b);
	free(big);
}

static void
test_senml(void)
{
	ReadingBatch b;

	CHECK(senml_case("[{\"bn\":\"esp32-01/\",\"bt\":1752045300,\"bu\":\"Cel\","
					 "\"n\":\"temperature\",\"v\":23.5},"
					 "{\"n\":\"temperature\",\"t\":1,\"v\":23.6},"
					 "{\"n\":\"humidity\",\"u\":\"%RH\",\"v\":41,\"t\":2}]", &b) ==
		  REJECT_NONE);
	CHECK(b.count == 3);
	CHECK(strcmp(b.readings[0].sensor_type, "temperature") == 0);
	CHECK(strcmp(b.readings[0].unit, "Cel") == 0);
	CHECK(b.readings[0].ts_us == INT64_C(1752045300000000));
	CHECK(b.readings[1].ts_us == INT64_C(1752045301000000));
	CHECK(strcmp(b.readings[2].sensor_type, "humidity") == 0);
	CHECK(strcmp(b.readings[2].unit, "%RH") == 0 && b.readings[2].value == 41);
	reading_batch_free(&b);

	/* no time: receive time; relative time: from now; bv adds */
	CHECK(senml_case("[{\"n\":\"urn:dev:x:temp\",\"v\":1},"
					 "{\"n\":\"p\",\"t\":-10,\"bv\":100,\"v\":2}]", &b) == REJECT_NONE);
	CHECK(strcmp(b.readings[0].sensor_type, "urn:dev:x:temp") == 0);
	CHECK(!b.readings[0].has_ts && b.readings[0].unit == NULL);
	CHECK(b.readings[1].has_ts && b.readings[1].ts_us == NOW_US - 10000000);
	CHECK(b.readings[1].value == 102);
	reading_batch_free(&b);

	CHECK(senml_reason("{\"n\":\"t\",\"v\":1}") == REJECT_MALFORMED_JSON);
	CHECK(senml_reason("[]") == REJECT_MISSING_FIELD);
	CHECK(senml_reason("[{\"n\":\"t\",\"vs\":\"on\"}]") == REJECT_INVALID_VALUE);
	CHECK(senml_reason("[{\"n\":\"t\",\"vb\":true}]") == REJECT_INVALID_VALUE);
	CHECK(senml_reason("[{\"n\":\"t\"}]") == REJECT_MISSING_FIELD);
	CHECK(senml_reason("[{\"n\":\"t\",\"v\":\"1\"}]") == REJECT_INVALID_VALUE);
	CHECK(senml_reason("[{\"n\":\"t\",\"v\":1,\"foo_\":1}]") == REJECT_INVALID_FIELD);
	CHECK(senml_reason("[{\"v\":1}]") == REJECT_INVALID_FIELD);	/* no name */
	CHECK(senml_reason("[{\"n\":\"bad name\",\"v\":1}]") == REJECT_INVALID_FIELD);
	CHECK(senml_reason("[{\"bn\":\"esp32-01/\",\"v\":1}]") == REJECT_INVALID_FIELD);
	CHECK(senml_reason("[{\"n\":\"t\",\"v\":1,\"t\":\"now\"}]") == REJECT_BAD_TIMESTAMP);
	CHECK(senml_reason("[{\"n\":\"t\",\"v\":1,\"t\":1e300}]") == REJECT_BAD_TIMESTAMP);
	CHECK(senml_reason("[{\"n\":\"t\",\"v\":1,\"t\":4102444800}]") ==
		  REJECT_BAD_TIMESTAMP);		/* 2100 */
	CHECK(senml_reason("[{\"n\":\"t\",\"v\":1},{\"n\":\"u\",\"v\":1,\"u\":3}]") ==
		  REJECT_INVALID_FIELD);
}

static void
test_escape(void)
{
	char		out[4 * 200 + 4];
	const char	nasty[] = "a\"b\\c\nd\x1b[31m\xc2\xb0";

	reading_escape(nasty, sizeof(nasty) - 1, 200, out, sizeof(out));
	CHECK(strcmp(out, "a\\\"b\\\\c\\x0ad\\x1b[31m\\xc2\\xb0") == 0);
	CHECK(strchr(out, '\n') == NULL);

	reading_escape("abcdef", 6, 3, out, sizeof(out));
	CHECK(strcmp(out, "abc...") == 0);

	CHECK(strcmp(reading_reason_name(REJECT_MALFORMED_JSON), "malformed_json") == 0);
	CHECK(strcmp(reading_reason_name(REJECT_NUM_REASONS), "unknown") == 0);
}

int
main(void)
{
	test_rfc3339();
	test_topic();
	test_json_good();
	test_json_bad();
	test_limits();
	test_senml();
	test_escape();

	return CHECK_SUMMARY("reading");
}
