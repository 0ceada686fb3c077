// Command driver runs operations of the Go library shqueue-go for shmq's interop tests and
// benchmarks. Messages carry a tag: word i of a message is tag ^ (i * 0x9E3779B97F4A7C15),
// so a torn message is detected on either side.
//
//	driver create KEY WORDS CAP             create a queue (the Go library's Create)
//	driver enqueue KEY shift|try|block N FIRST   enqueue tags FIRST..FIRST+N-1
//	driver dequeue KEY try|block N          dequeue N messages, print their tags
//	driver consume KEY STOPFILE             dequeue (try) until STOPFILE exists and the queue is empty
//	driver script KEY                       the scripted sequence of the layout comparison
//	driver pong KEYIN KEYOUT N              echo N messages from KEYIN to KEYOUT (block)
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rdjjke/shqueue-go/shqueue"
)

func message(tag uint64, size int) []byte {
	m := make([]byte, size)
	for i := 0; i < size/8; i++ {
		binary.LittleEndian.PutUint64(m[8*i:], tag^(uint64(i)*0x9E3779B97F4A7C15))
	}
	return m
}

func tagOf(m []byte) uint64 {
	tag := binary.LittleEndian.Uint64(m)
	for i := 0; i < len(m)/8; i++ {
		if binary.LittleEndian.Uint64(m[8*i:]) != tag^(uint64(i)*0x9E3779B97F4A7C15) {
			fail("torn message with tag %#x", tag)
		}
	}
	return tag
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "driver: "+format+"\n", args...)
	os.Exit(1)
}

func num(s string) int {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		fail("not a number: %s", s)
	}
	return int(n)
}

func open(key string) *shqueue.Queue {
	q, err := shqueue.Open(num(key))
	if err != nil {
		fail("open %s: %v", key, err)
	}
	return q
}


func main() {
	a := os.Args[1:]
	if len(a) < 2 {
		fail("usage: see the source")
	}
	switch a[0] {
	case "create":
		if _, err := shqueue.Create(num(a[1]), uint32(num(a[2])), uint32(num(a[3]))); err != nil {
			fail("create: %v", err)
		}
	case "enqueue":
		q := open(a[1])
		size := num(os.Getenv("SHMQ_MSG_BYTES"))
		n, first := num(a[3]), num(a[4])
		for i := 0; i < n; i++ {
			m := message(uint64(first+i), size)
			switch a[2] {
			case "shift":
				q.EnqueueShift(m)
			case "try":
				for !q.EnqueueTry(m) {
					time.Sleep(10 * time.Microsecond)
				}
			case "block":
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				if err := q.EnqueueBlock(ctx, m); err != nil {
					fail("enqueue block: %v", err)
				}
				cancel()
			}
		}
	case "dequeue":
		q := open(a[1])
		buf := make([]byte, num(os.Getenv("SHMQ_MSG_BYTES")))
		for i := 0; i < num(a[3]); i++ {
			if a[2] == "try" {
				for !q.DequeueTry(buf) {
					time.Sleep(10 * time.Microsecond)
				}
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				if err := q.DequeueBlock(ctx, buf); err != nil {
					fail("dequeue block: %v", err)
				}
				cancel()
			}
			fmt.Println(tagOf(buf))
		}
	case "consume":
		q := open(a[1])
		buf := make([]byte, num(os.Getenv("SHMQ_MSG_BYTES")))
		for {
			_, err := os.Stat(a[2])
			stopping := err == nil
			if q.DequeueTry(buf) {
				fmt.Println(tagOf(buf))
			} else if stopping {
				return
			}
		}
	case "script":
		q := open(a[1])
		size := num(os.Getenv("SHMQ_MSG_BYTES"))
		buf := make([]byte, size)
		for i := 0; i < 5; i++ {
			q.EnqueueShift(message(uint64(i), size))
		}
		q.DequeueTry(buf)
		q.EnqueueTry(message(100, size))
		q.DequeueTry(buf)
		q.DequeueTry(buf)
		if err := q.EnqueueBlock(context.Background(), message(200, size)); err != nil {
			fail("script: %v", err)
		}
	case "pong":
		in, out := open(a[1]), open(a[2])
		buf := make([]byte, num(os.Getenv("SHMQ_MSG_BYTES")))
		for i := 0; i < num(a[3]); i++ {
			if err := in.DequeueBlock(context.Background(), buf); err != nil {
				fail("pong: %v", err)
			}
			if err := out.EnqueueBlock(context.Background(), buf); err != nil {
				fail("pong: %v", err)
			}
		}
	default:
		fail("unknown command %s", a[0])
	}
}
